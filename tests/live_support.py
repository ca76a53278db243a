"""Which real clusters the live tests run against, how to reach them, and how answers are compared.

Targets are the clusters named in the environment (P4R_OPENSEARCH_URL, P4R_ES_URL: one URL or several,
comma-separated), or, when neither is set, the engines of `engines/` (OpenSearch 3.x and 2.x, and
Elasticsearch 8.x from Maven Central), which the session starts and always stops.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import engines
from p4r_search.backends.cluster import ClusterBackend
from p4r_search.backends.connect import API_KEY_ENV, PASSWORD_ENV, USERNAME_ENV
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.transport import recorded_requests
from p4r_search.cli.engines import open_cluster
from p4r_search.clusters import elasticsearch, opensearch
from p4r_search.clusters.capabilities import CapabilityError, supports
from p4r_search.clusters.model import Distribution, Request
from p4r_search.models import Hit
from p4r_search.query import PersonaQuery

SCORE_TOLERANCE = 1e-3  # cosine: cluster vs embedded (float32 painless vs numpy, vectors sent rounded to 7 places)
TIE = 1e-5  # items whose exact cosines are this close may come in either order
URL_ENV = {"es": "P4R_ES_URL", "opensearch": "P4R_OPENSEARCH_URL"}
PREFIX = {"es": "P4R_ES_", "opensearch": "P4R_OPENSEARCH_"}
CLIENT_MODULE = {"es": "elasticsearch", "opensearch": "opensearchpy"}
CLIENT_PIP = {"es": "'elasticsearch>=8.16,<9' (8.x server) or 'elasticsearch>=9,<10' (9.x server)",
              "opensearch": "'opensearch-py>=2.4'"}
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Target:
    engine: str  # p4r's --engine: "es" or "opensearch"
    url: str | None = None  # a cluster named in the environment
    spec: engines.EngineSpec | None = None  # or an engine this session starts

    @property
    def id(self) -> str:
        return f"{self.spec.name}-{self.spec.version}" if self.spec else f"{self.engine}@{self.url}"


def targets() -> list[Target]:
    given = [Target(engine, url=url.strip()) for engine, var in URL_ENV.items()
             for url in os.environ.get(var, "").split(",") if url.strip()]
    return given or [Target(spec.p4r_engine, spec=spec) for spec in engines.SPECS]


def engines_required() -> bool:
    """CI sets P4R_REQUIRE_ENGINES=1: there a missing Java or Maven fails the run instead of skipping."""
    return os.environ.get("P4R_REQUIRE_ENGINES", "").strip().lower() in TRUE


# -- configuration from the environment ----------------------------------------------------------
@dataclass(frozen=True)
class LiveConfig:
    engine: str
    url: str
    ca_certs: str | None
    insecure: bool
    auth: dict[str, str | None]  # P4R_USERNAME / P4R_PASSWORD / P4R_API_KEY as the package will read them

    @classmethod
    def from_env(cls, engine: str, url: str) -> LiveConfig:
        env, prefix = os.environ, PREFIX[engine]
        names = {USERNAME_ENV: "USERNAME", PASSWORD_ENV: "PASSWORD", API_KEY_ENV: "API_KEY"}
        if any(env.get(prefix + suffix) for suffix in names.values()):
            auth = {shared: env.get(prefix + suffix) for shared, suffix in names.items()}
        else:
            auth = {shared: env.get(shared) for shared in names}
        ca_certs = env.get(prefix + "CA_CERTS") or env.get("P4R_CA_CERTS") or None
        if ca_certs and not Path(ca_certs).is_file():
            pytest.fail(f"the CA bundle {ca_certs!r} (from {prefix}CA_CERTS / P4R_CA_CERTS) is not a file",
                        pytrace=False)
        insecure_value = env.get(prefix + "INSECURE", env.get("P4R_INSECURE", ""))
        return cls(engine, url, ca_certs, insecure_value.strip().lower() in TRUE, auth)

    @classmethod
    def local(cls, node: engines.Node) -> LiveConfig:
        """An engine started here: plain http on loopback, security off, no auth."""
        return cls(node.engine, node.url, None, False, {USERNAME_ENV: None, PASSWORD_ENV: None, API_KEY_ENV: None})

    @contextlib.contextmanager
    def auth_env(self) -> Iterator[None]:
        """The package reads auth from P4R_USERNAME / P4R_PASSWORD / P4R_API_KEY when it makes a client."""
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.auth.items():
                if value:
                    mp.setenv(name, value)
                else:
                    mp.delenv(name, raising=False)
            yield

    def cli_args(self, index: str) -> list[str]:
        args = ["--engine", self.engine, "--url", self.url, "--index", index]
        if self.ca_certs:
            args += ["--ca-certs", self.ca_certs]
        if self.insecure:
            args.append("--insecure")
        return args


@dataclass
class Live:
    target: Target
    config: LiveConfig
    backend: ClusterBackend
    index: str
    created: list[str] = field(default_factory=list)  # every index of this run on this cluster, dropped at the end

    def __post_init__(self) -> None:
        self.created.append(self.index)

    @property
    def where(self) -> str:
        return f"{self.backend.cluster} at {self.config.url}"

    def send(self, request: Request):
        return self.backend.transport.send(request)


def require_client(engine: str) -> None:
    try:
        importlib.import_module(CLIENT_MODULE[engine])
    except ImportError:
        pytest.fail(f"{URL_ENV[engine]} is set but the {CLIENT_MODULE[engine]} client is not installed: "
                    f"pip install {CLIENT_PIP[engine]}", pytrace=False)


def connect(config: LiveConfig, index: str) -> ClusterBackend:
    try:
        with config.auth_env():
            return open_cluster(config.engine, index, config.url, config.ca_certs, config.insecure, "lucene",
                                False, None, None)
    except Exception as exc:  # noqa: BLE001 - turn the common set-up mistakes into one readable line
        error = f"{type(exc).__name__}: {exc}"
    hint = ""
    if config.engine == "es" and ("media_type_header_exception" in error or "HTTP 400" in error):
        import elasticsearch

        version = elasticsearch.__version__
        if "media_type_header_exception" in error or version[0] >= 9:
            hint = (f" If the server is Elasticsearch 8.x: the elasticsearch client {'.'.join(map(str, version))} "
                    f"sends compatible-with={version[0]} headers, which an {version[0] - 1}.x server refuses with "
                    f"400; install the client of the server's major version, pip install {CLIENT_PIP['es']}.")
    pytest.fail(f"cannot connect to {config.engine} at {config.url}: {error}.{hint}", pytrace=False)


def drop(backend: ClusterBackend, indices: list[str]) -> None:
    """Delete the run's indices by name (Elasticsearch refuses wildcard deletes by default), then close."""
    for index in indices:
        try:
            backend.transport.send(Request("DELETE", f"/{index}", params={"ignore_unavailable": "true"}))
        except Exception as exc:  # noqa: BLE001 - never hide the test's own failure behind a cleanup error
            warnings.warn(f"could not delete the live test index {index!r}: {exc!r}", stacklevel=1)
    close = getattr(getattr(backend.transport, "client", None), "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


# -- comparing with the embedded engine ------------------------------------------------------------
def persona_cosines(embedded: EmbeddedBackend, item_id: str, vector: np.ndarray) -> dict[str, float]:
    """Exact cosine of every persona of an item (the embedded engine's vectors), by persona id."""
    vectors = embedded.persona_vectors([item_id])[item_id]
    personas = embedded.personas(item_id)
    assert len(personas) == len(vectors)
    q = vector / np.linalg.norm(vector)
    return {p.persona_id: float(v @ q) for p, v in zip(personas, vectors)}


def exact_cosine(embedded: EmbeddedBackend, item_id: str, vector: np.ndarray) -> float:
    return max(persona_cosines(embedded, item_id, vector).values())


def assert_explained(hit: Hit, embedded: EmbeddedBackend, vector: np.ndarray, where: str) -> None:
    """The hit's cosine is the item's exact best-persona cosine, and its persona is that best persona."""
    cosines = persona_cosines(embedded, hit.item_id, vector)
    best = max(cosines.values())
    assert abs(hit.scores["cosine"] - best) <= SCORE_TOLERANCE, (
        f"{where}: item {hit.item_id}: cosine {hit.scores['cosine']:.6f}, exact {best:.6f}")
    assert hit.persona is not None and hit.persona.name, f"{where}: item {hit.item_id} has no persona"
    assert hit.persona.persona_id in cosines, f"{where}: item {hit.item_id}: unknown persona {hit.persona.persona_id}"
    assert cosines[hit.persona.persona_id] >= best - TIE, (
        f"{where}: item {hit.item_id}: persona {hit.persona.persona_id} is not its best-matching persona")


def assert_same_ranking(expected: list[Hit], actual: list[Hit], embedded: EmbeddedBackend, vector: np.ndarray,
                        where: str) -> None:
    """Same items in the same order, scores equal within SCORE_TOLERANCE; exact ties may swap."""
    want, got = [h.item_id for h in expected], [h.item_id for h in actual]
    assert len(got) == len(want) and len(set(got)) == len(got), f"{where}: embedded {want}, cluster {got}"
    for rank, (e, a) in enumerate(zip(expected, actual), start=1):
        assert abs(a.score - e.score) <= SCORE_TOLERANCE, (
            f"{where}: rank {rank}: cluster {a.item_id} {a.score:.6f}, embedded {e.item_id} {e.score:.6f}")
        if a.item_id != e.item_id:  # allowed only where the two items are tied on the exact cosine
            tied = abs(exact_cosine(embedded, a.item_id, vector) - e.score) <= TIE
            assert tied, (f"{where}: rank {rank}: cluster has {a.item_id}, embedded {e.item_id}\n"
                          f"  embedded {want}\n  cluster  {got}")


def raw_hits(answer: dict) -> list[tuple[str, float]]:
    """(id, score) of a _search answer, in its order."""
    return [(h["_id"], float(h["_score"])) for h in answer["hits"]["hits"]]


# -- searches that a cluster without painless refuses, and stage one on its own -------------------------
def painless(live: Live) -> bool:
    """Whether this cluster can run p4r's searches; where it cannot, the search must be refused with why."""
    return supports(live.backend.cluster, "painless")


def assert_refused(live: Live, query: PersonaQuery) -> None:
    with pytest.raises(CapabilityError, match="no lang-painless module"):
        live.backend.search(query)


def knn_stage_one(backend, query: PersonaQuery):
    """Stage one's own request (no painless), and its scores converted as the capability table says."""
    cluster = backend.cluster
    if cluster.distribution is Distribution.ELASTICSEARCH:
        proposal = elasticsearch.vector_proposal(backend.index, cluster, query)
    else:
        proposal = opensearch.vector_proposal(backend.index, cluster, query, backend.os_engine)
    return [(item, proposal.convert(score)) for item, score in raw_hits(backend.transport.send(proposal.request))]


def counted_requests(backend):
    """The requests the backend sends inside the block, recorded on its transport (each one HTTP request
    through the official client)."""
    return recorded_requests(backend.transport)


CATEGORIES = 100  # 50 of the 5,000 synthetic items in each


CLUSTERS = 50  # topics: embeddings of real text are clustered, not spread uniformly over the sphere
SPREAD = 1.0  # noise norm against a unit centre: cos(persona, its centre) is about 0.7


def synthetic_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """`count` unit vectors around random topic centres. Uniformly random 384-d vectors, where every cosine is
    near 0, would test HNSW on data no encoder makes (top-10 recall there varied from build to build)."""
    centres = np.random.default_rng(3).normal(size=(CLUSTERS, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(size=(count, dim)) * SPREAD / np.sqrt(dim)
    vectors = centres[rng.integers(0, CLUSTERS, count)] + noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def synthetic_documents(count: int, dim: int, seed: int = 7):
    """`count` items with 1 to 3 persona vectors each (`synthetic_vectors`; no encoder: the scoring is tested)."""
    from p4r_search.documents import ItemDocument
    from p4r_search.models import GeneratorInfo, Persona

    rng = np.random.default_rng(seed)
    generator = GeneratorInfo(name="synthetic", version="1", model="none", prompt_version="1")
    for n in range(count):
        vectors = synthetic_vectors(rng, int(rng.integers(1, 4)), dim)
        personas = tuple(Persona(persona_id=f"s{n}-{j}", name=f"Synthetic persona{j}", description="synthetic",
                                 rationale="synthetic", evidence_review_ids=(f"r{n}",), support=1.0)
                         for j in range(len(vectors)))
        yield ItemDocument(f"s{n}", f"item {n}", personas, vectors, generator, f"hash{n}", "synthetic-model",
                           categories=(f"c{n % CATEGORIES}",))
