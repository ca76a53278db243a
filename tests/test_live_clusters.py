"""Live Elasticsearch / OpenSearch: the cluster backends must answer like the embedded engine.

Runs only against clusters you point it at; without them every test is skipped. See docker/README.md to
start one locally with Docker Compose.

    P4R_ES_URL=http://localhost:9200 P4R_USERNAME=elastic P4R_PASSWORD=... \\
        .venv/bin/python -m pytest tests/test_live_clusters.py
    P4R_OPENSEARCH_URL=https://localhost:9200 P4R_USERNAME=admin P4R_PASSWORD=... P4R_INSECURE=1 \\
        .venv/bin/python -m pytest tests/test_live_clusters.py

Environment:
  P4R_ES_URL, P4R_OPENSEARCH_URL     the clusters; each one left unset skips its engine
  P4R_USERNAME, P4R_PASSWORD,         auth, read exactly as the `p4r` command reads it
  P4R_API_KEY                         (P4R_API_KEY is Elasticsearch only)
  P4R_ES_USERNAME, P4R_ES_PASSWORD, P4R_ES_API_KEY, P4R_OPENSEARCH_USERNAME, P4R_OPENSEARCH_PASSWORD
                                      per-engine auth, to test two clusters with different users in one run;
                                      when any of an engine's is set, they replace the shared three
  P4R_CA_CERTS (P4R_ES_CA_CERTS, P4R_OPENSEARCH_CA_CERTS)   CA bundle for an https:// URL
  P4R_INSECURE=1 (P4R_ES_INSECURE, P4R_OPENSEARCH_INSECURE) no certificate verification (local demo
                                      certificates only)

Each engine gets a fresh index `p4r-live-<random>` holding the test subset's personas (the same documents
as the embedded `subset_index`), which is deleted at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl, run_cli
from p4r_search.backends.cluster import ClusterBackend
from p4r_search.backends.connect import API_KEY_ENV, PASSWORD_ENV, USERNAME_ENV
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.catalog import load_items
from p4r_search.cli.engines import open_cluster
from p4r_search.clusters.capabilities import supports
from p4r_search.clusters.model import Distribution, Request
from p4r_search.documents import build_documents
from p4r_search.io import LineReader
from p4r_search.models import Hit
from p4r_search.personas.runner import read_personas
from p4r_search.query import PersonaQuery

K = 10
QUERIES = 10
SCORE_TOLERANCE = 1e-3  # cosine: cluster vs embedded (float32 painless vs numpy, vectors sent rounded to 7 places)
TIE = 1e-5  # items whose exact cosines are this close may come in either order
MIN_KNN_OVERLAP = 0.9
USER = "demo-petite-dresses"

URL_ENV = {"es": "P4R_ES_URL", "opensearch": "P4R_OPENSEARCH_URL"}
PREFIX = {"es": "P4R_ES_", "opensearch": "P4R_OPENSEARCH_"}
CLIENT_MODULE = {"es": "elasticsearch", "opensearch": "opensearchpy"}
CLIENT_PIP = {"es": "'elasticsearch>=8.16,<9' (8.x server) or 'elasticsearch>=9,<10' (9.x server)",
              "opensearch": "'opensearch-py>=2.4'"}
TRUE = ("1", "true", "yes", "on")


def _skip_unless(engine: str):
    var = URL_ENV[engine]
    return pytest.mark.skipif(
        not os.environ.get(var),
        reason=f"{var} is not set: no live {'Elasticsearch' if engine == 'es' else 'OpenSearch'} to test "
               "(see docker/README.md)",
    )


ENGINES = [
    pytest.param("es", id="elasticsearch", marks=_skip_unless("es")),
    pytest.param("opensearch", id="opensearch", marks=_skip_unless("opensearch")),
]


# -- configuration from the environment ----------------------------------------------------------
@dataclass(frozen=True)
class LiveConfig:
    engine: str
    url: str
    ca_certs: str | None
    insecure: bool
    auth: dict[str, str | None]  # P4R_USERNAME / P4R_PASSWORD / P4R_API_KEY as the package will read them

    @classmethod
    def from_env(cls, engine: str) -> LiveConfig:
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
        return cls(engine, env[URL_ENV[engine]], ca_certs, insecure_value.strip().lower() in TRUE, auth)

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
    config: LiveConfig
    backend: ClusterBackend
    index: str


def _require_client(engine: str) -> None:
    try:
        importlib.import_module(CLIENT_MODULE[engine])
    except ImportError:
        pytest.fail(f"{URL_ENV[engine]} is set but the {CLIENT_MODULE[engine]} client is not installed: "
                    f"pip install {CLIENT_PIP[engine]}", pytrace=False)


def _connect(config: LiveConfig, index: str) -> ClusterBackend:
    try:
        with config.auth_env():
            return open_cluster(config.engine, index, config.url, config.ca_certs, config.insecure, "lucene",
                                False, None, None)
    except Exception as exc:  # turn the common set-up mistakes into one readable line
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


def _drop(backend: ClusterBackend, index: str) -> None:
    try:
        backend.transport.send(Request("DELETE", f"/{index}"))
    except Exception as exc:  # never hide the test's own failure behind a cleanup error
        if getattr(exc, "status_code", None) != 404:  # 404: the index was never created
            warnings.warn(f"could not delete the live test index {index!r}: {exc!r}", stacklevel=1)
    close = getattr(getattr(backend.transport, "client", None), "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session", params=ENGINES)
def connection(request) -> Live:
    """The cluster, connected and detected, and the name of the index this run will use (deleted at the end).

    Session-scoped, and first in `live`'s arguments, so that a wrong URL, password or client fails at once,
    before the encoder and the embedded index are built."""
    engine = request.param
    _require_client(engine)
    config = LiveConfig.from_env(engine)
    index = f"p4r-live-{uuid.uuid4().hex[:12]}"
    backend = _connect(config, index)
    request.addfinalizer(lambda: _drop(backend, index))
    return Live(config, backend, index)


@pytest.fixture(scope="session")
def live(connection, encoder, subset, subset_personas, subset_index, tmp_path_factory) -> Live:
    """A fresh index on the cluster holding the subset's personas (the embedded index's documents), refreshed."""
    backend, index = connection.backend, connection.index
    backend.create_index(encoder.dim)
    records = list(read_personas(subset_personas).values())
    items = load_items(subset["items"], LineReader())[0]
    failed = tmp_path_factory.mktemp("live-failed") / f"{index}.failed.jsonl"
    report = backend.write(build_documents(records, encoder, items), partial=False, failed_path=failed)
    failures = failed.read_text(encoding="utf-8") if failed.exists() else ""
    assert report.failed == 0 and report.written == len(records), f"bulk: {report}\n{failures}"
    backend.transport.send(Request("POST", f"/{index}/_refresh"))
    return connection


@pytest.fixture(scope="module")
def embedded(subset_index) -> EmbeddedBackend:
    return EmbeddedBackend(subset_index)


@pytest.fixture(scope="module")
def query_vectors(encoder, subset) -> np.ndarray:
    """QUERIES review texts of the subset, spread over its items, encoded: realistic profile vectors."""
    reviews = sorted(read_jsonl(subset["reviews"]), key=lambda r: (r["item_id"], r["review_id"]))
    step = max(1, len(reviews) // QUERIES)
    texts = [r["text"] for r in reviews[::step][:QUERIES]]
    assert len(texts) == QUERIES
    return np.asarray(encoder.encode(texts), dtype=np.float32)


# -- helpers --------------------------------------------------------------------------------------
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


# -- tests ----------------------------------------------------------------------------------------
def test_index_holds_the_same_documents(live, embedded):
    assert len(live.backend) == len(embedded)
    assert live.backend.model_name == embedded.model_name
    ids = embedded.item_ids()
    theirs, ours = live.backend.persona_vectors(ids), embedded.persona_vectors(ids)
    assert sorted(theirs) == sorted(ours)
    for item_id in ids:
        assert theirs[item_id].shape == ours[item_id].shape
        np.testing.assert_allclose(theirs[item_id], ours[item_id], atol=1e-5, err_msg=f"item {item_id}")
        personas = [p.persona_id for p in live.backend.personas(item_id)]
        assert personas == [p.persona_id for p in embedded.personas(item_id)], f"item {item_id}"


def test_exact_top10_equals_embedded_exact(live, embedded, query_vectors):
    for n, vector in enumerate(query_vectors):
        query = PersonaQuery(vector=vector, k=K, mode="exact")
        expected, actual = embedded.search(query), live.backend.search(query)
        assert len(expected) == min(K, len(embedded))
        where = f"{live.config.engine} exact, query {n}"
        assert_same_ranking(expected, actual, embedded, vector, where)
        for hit in actual:
            assert hit.scores == {"cosine": hit.score}, f"{where}: {hit.scores}"
            assert_explained(hit, embedded, vector, where)


def test_knn_top10_overlaps_embedded_exact(live, embedded, query_vectors):
    overlaps = []
    for n, vector in enumerate(query_vectors):
        exact = embedded.search(PersonaQuery(vector=vector, k=K, mode="exact"))
        hits = live.backend.search(PersonaQuery(vector=vector, k=K, mode="knn"))
        where = f"{live.config.engine} knn, query {n}"
        assert len(hits) <= K and len({h.item_id for h in hits}) == len(hits), where
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), f"{where}: not sorted by score: {scores}"
        for hit in hits:  # stage 2 rescored them exactly, whatever stage 1's score scale
            assert_explained(hit, embedded, vector, where)
        overlaps.append(len({h.item_id for h in hits} & {h.item_id for h in exact}) / len(exact))
    assert np.mean(overlaps) >= MIN_KNN_OVERLAP, f"{live.config.engine} knn overlap per query: {overlaps}"


@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_hybrid_hits_are_explained_with_all_scores(live, embedded, query_vectors, fusion):
    cluster = live.backend.cluster
    is_opensearch = cluster.distribution is Distribution.OPENSEARCH
    if fusion == "rrf" and is_opensearch and not supports(cluster, "score_ranker_rrf"):
        pytest.skip(f"{cluster}: RRF on OpenSearch needs 2.19")
    # keywords that surely match: the name of one persona of the first item
    first = embedded.item_ids()[0]
    keywords = embedded.personas(first)[0].name
    vector = query_vectors[0]
    query = PersonaQuery(vector=vector, text=keywords, mode="hybrid", fusion=fusion, k=5)
    hits = live.backend.search(query)
    where = f"{live.config.engine} hybrid {fusion} ({cluster}), keywords {keywords!r}"
    assert hits, f"{where}: no hits"
    assert len(hits) <= 5 and len({h.item_id for h in hits}) == len(hits), where
    for hit in hits:
        # the contract of Hit.scores, and what the embedded engine returns in hybrid mode
        assert set(hit.scores) == {"cosine", "bm25", "fused"}, f"{where}: item {hit.item_id} scores {hit.scores}"
        assert hit.score == hit.scores["fused"], f"{where}: {hit}"
        assert_explained(hit, embedded, vector, where)
    fused = [h.score for h in hits]
    assert fused == sorted(fused, reverse=True), f"{where}: not sorted by fused score: {fused}"
    assert any(h.scores["bm25"] > 0 for h in hits), f"{where}: no hit matched the keywords"


def test_cli_recommend_matches_embedded(live, subset, subset_index):
    common = ["--interactions", subset["interactions"], "--user", USER, "-k", "5", "--mode", "exact", "--json"]
    expected = json.loads(run_cli("recommend", "--index", subset_index, *common).stdout)
    with live.config.auth_env():
        actual = json.loads(run_cli("recommend", *live.config.cli_args(live.index), *common).stdout)
    assert actual["history"] == expected["history"]
    want = [(h["item_id"], h["score"]) for h in expected["hits"]]
    got = [(h["item_id"], h["score"]) for h in actual["hits"]]
    assert [i for i, _ in got] == [i for i, _ in want], f"embedded {want}\ncluster  {got}"
    assert all(abs(a - b) <= SCORE_TOLERANCE for (_, a), (_, b) in zip(got, want)), f"embedded {want}\ncluster  {got}"
    assert all(h["persona"] and h["evidence"] for h in actual["hits"])
