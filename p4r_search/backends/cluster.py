"""The Elasticsearch / OpenSearch backend: sends what `p4r_search.clusters` translates, over a transport
(transport.py). All I/O is here."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..clusters import dsl
from ..clusters.capabilities import CapabilityError, scores_float_vectors
from ..clusters.dialects import dialect_for
from ..clusters.model import Cluster, Distribution, Request, parse_version
from ..clusters.plan import VECTOR_MODES, choose, exact_scan
from ..documents import ItemDocument
from ..errors import NotFoundError, P4RError
from ..models import EvidenceSnippet, Hit, ItemCard, MatchedPersona, PersonaCard
from ..query import PersonaQuery
from .cluster_checks import IndexChecks, check_compatible
from .connect import client_distribution
from .transport import RETRY_STATUSES, ClientTransport, DryRunTransport, Transport, http_status

log = logging.getLogger(__name__)
NODE_PLUGINS = "nodes.*.plugins.name,nodes.*.modules.name"


def detect(transport: Transport) -> Cluster:
    version = root_info(transport).get("version", {})
    plugins = installed_plugins(transport)
    if version.get("distribution") == "opensearch":
        return Cluster(Distribution.OPENSEARCH, parse_version(version["number"]), plugins=plugins)
    licence = transport.send(Request("GET", "/_license")).get("license", {}).get("type", "basic")
    return Cluster(Distribution.ELASTICSEARCH, parse_version(version["number"]), licence, plugins)


def root_info(transport: Transport) -> dict[str, Any]:
    """GET /, or where a node has no root endpoint (Elasticsearch without its rest-root module answers 405,
    run on the 8.19.0 integration-test zip) the lowest node version from GET /_nodes."""
    try:
        return transport.send(Request("GET", "/"))
    except Exception as exc:
        if http_status(exc) not in (404, 405):
            raise
    nodes = transport.send(Request("GET", "/_nodes", params={"filter_path": "nodes.*.version"})).get("nodes") or {}
    versions = [parse_version(n["version"]) for n in nodes.values() if "version" in n]
    if not versions:
        raise ClusterDetectionError("the cluster answered neither GET / nor GET /_nodes with a version")
    return {"version": {"number": ".".join(map(str, min(versions)))}}


def installed_plugins(transport: Transport) -> frozenset[str] | None:
    """Plugins and modules present on every node; None where the cluster will not say (a managed service
    may refuse the nodes API), and then p4r assumes every capability's plugin is there."""
    try:
        answer = transport.send(Request("GET", "/_nodes/plugins", params={"filter_path": NODE_PLUGINS}))
    except Exception as exc:  # noqa: BLE001 - any refusal only means "not known"
        log.info("could not list the cluster's plugins (%s); assuming the usual ones", exc)
        return None
    nodes = (answer or {}).get("nodes") or {}
    if not nodes:
        return None
    per_node = [{p["name"] for key in ("plugins", "modules") for p in node.get(key) or ()} for node in nodes.values()]
    return frozenset(set.intersection(*per_node))


class ClusterDetectionError(P4RError):
    exit_code = 69  # EX_UNAVAILABLE


@dataclass
class BulkReport:
    written: int = 0
    failed: int = 0
    retried: int = 0


class ClusterBackend(IndexChecks):
    def __init__(self, transport: Transport, cluster: Cluster, index: str, *, os_engine: str = "lucene"):
        self.transport = transport
        self.cluster = cluster
        self.index = index
        self.os_engine = os_engine
        self._pipelines: set[str] = set()

    @classmethod
    def from_client(cls, client: Any, index: str, *, os_engine: str = "lucene") -> ClusterBackend:
        """Over your own elasticsearch-py or opensearch-py client; the cluster is asked what it is."""
        transport = ClientTransport(client, client_distribution(client))
        return cls(transport, detect(transport), index, os_engine=os_engine)

    @cached_property
    def dialect(self):
        return dialect_for(self.cluster, self.os_engine)

    # -- index management -------------------------------------------------------------------------
    def create_index(self, dim: int) -> None:
        self.transport.send(self.dialect.create_index(self.index, dim))

    def attach(self, dim: int, current_mapping: dict[str, Any] | None) -> None:
        """Add the personas field to an existing index, refusing a conflicting one before writing anything."""
        existing = dsl.existing_personas(current_mapping or {})
        if existing is not None:
            check_compatible(existing, dim, self.index)
        if self.cluster.distribution is Distribution.OPENSEARCH and not isinstance(self.transport, DryRunTransport):
            self._require_knn_index()
        self.transport.send(self.dialect.put_mapping(self.index, dim))

    def _require_knn_index(self) -> None:
        """OpenSearch refuses an HNSW `knn_vector` in an index created without `index.knn: true`, and that
        setting is final: not even a closed index takes it (run on OpenSearch 3.5.0)."""
        answer = self.transport.send(Request("GET", f"/{self.index}/_settings",
                                             params={"filter_path": "*.settings.index.knn"}))
        enabled = any(str(body.get("settings", {}).get("index", {}).get("knn", "")).lower() == "true"
                      for body in (answer or {}).values() if isinstance(body, dict))
        if not enabled:
            raise CapabilityError(
                f"{self.index} was created without `index.knn: true`, which OpenSearch cannot add to an existing "
                "index (it is a final setting), and without it the persona vectors cannot be indexed for kNN. "
                f"Create a new index with it (`p4r index create`, or your own mapping with settings.index.knn: "
                f"true), copy your documents with POST /_reindex, then attach to the new index")

    def refresh(self) -> None:
        """Make what was written searchable now, rather than at the next refresh interval."""
        self.transport.send(Request("POST", f"/{self.index}/_refresh"))

    def delete_index(self) -> None:
        self.transport.send(Request("DELETE", f"/{self.index}"))

    def mapping(self) -> dict[str, Any]:
        return self.transport.send(Request("GET", f"/{self.index}/_mapping"))

    def write(self, documents: Iterable[ItemDocument], *, partial: bool, failed_path: Path | None,
              chunk: int = 500, on_chunk: Callable[[int], None] = lambda n: None) -> BulkReport:
        """Bulk-write in chunks; 429/503 item failures are retried with backoff; the rest go to failed_path."""
        report = BulkReport()
        batch: list[ItemDocument] = []
        for doc in documents:
            batch.append(doc)
            if len(batch) >= chunk:
                self._write_chunk(batch, partial, failed_path, report)
                on_chunk(len(batch))
                batch = []
        if batch:
            self._write_chunk(batch, partial, failed_path, report)
            on_chunk(len(batch))
        return report

    def _write_chunk(self, docs: list[ItemDocument], partial: bool, failed_path: Path | None, report: BulkReport) -> None:
        actions = bulk_actions(self.index, docs, partial=partial)
        by_id = {a["_id"]: a for a in actions}
        delay = 0.5
        for attempt in range(4):
            failures = [(info, by_id[_item_id(info)]) for ok, info in self.transport.bulk(list(by_id.values())) if not ok]
            retry = {a["_id"]: a for info, a in failures if _status(info) in RETRY_STATUSES}
            report.written += len(by_id) - len(failures)
            final = [(info, a) for info, a in failures if a["_id"] not in retry or attempt == 3]
            record_failures(final, failed_path)
            report.failed += len(final)
            if not retry or attempt == 3:
                return
            report.retried += len(retry)
            time.sleep(delay)
            delay *= 2
            by_id = retry

    # -- reading ----------------------------------------------------------------------------------
    def search(self, query: PersonaQuery) -> list[Hit]:
        # hybrid and rescore plans score with a script whatever the mapping: they need not read it
        float_vectors = query.mode in VECTOR_MODES and self.float_vectors
        plan = self.dialect.search_plan(self.index, self.cluster, query, float_vectors=float_vectors,
                                        index_documents=self._index_documents_for(query))
        lists, first = self._propose(plan)
        if plan.final_is_exact:
            convert = plan.proposals[0].convert or (lambda s: s)
            return [dsl.to_hit(i, src.get("title", ""), convert(s), {"cosine": convert(s)}, p, query.explain)
                    for i, s, src, p in first[: query.k]]
        if set(lists) == {"vector", "bm25"}:
            # fuse exact cosines, as the embedded engine does: rescore every proposed item first
            exact = self._exact(plan, list(dict.fromkeys([*lists["vector"], *lists["bm25"]])))
            lists["vector"] = {i: exact[i][0] for i in lists["vector"] if i in exact}
            chosen, components = choose(query, lists)
        else:
            chosen, components = choose(query, lists)
            exact = self._exact(plan, chosen) if chosen else {}
        if not chosen:
            return []
        if plan.keyword_scores is not None:
            answer = self.transport.send(plan.keyword_scores(chosen))
            bm25 = {i: s * plan.keyword_scale for i, s, _, _ in dsl.parse_hits(answer)}
            for item in chosen:
                components.setdefault(item, {})["bm25"] = bm25.get(item, 0.0)
        hits = []
        for item in chosen:
            if item not in exact:
                continue
            cosine, src, persona = exact[item]
            scores = {"cosine": cosine, **components.get(item, {})}
            score = scores.get("fused", cosine)
            hits.append(dsl.to_hit(item, src.get("title", ""), score, scores, persona, query.explain))
        if set(lists) == {"vector"}:
            hits.sort(key=lambda h: (-h.score, h.item_id))
        return hits[: query.k]

    def _index_documents_for(self, query: PersonaQuery) -> int | None:
        """The index's document count where the plan for `query` depends on it, else None (not read)."""
        return self.index_documents if exact_scan(query) and self.dialect.exact_needs_document_count else None

    def _propose(self, plan):
        """Stage 1: each proposal's ranked list (item → score on the embedded scale), and the first raw hits."""
        for request in plan.setup:
            if request.path not in self._pipelines:  # a pipeline is named by its content: put it once
                self.transport.send(request)
                self._pipelines.add(request.path)
        lists: dict[str, dict[str, float]] = {}
        first: list[tuple[str, float, dict[str, Any], dict[str, Any] | None]] = []
        for proposal in plan.proposals:
            hits = dsl.parse_hits(self.transport.send(proposal.request))
            convert = proposal.convert or (lambda s: s)
            lists[proposal.name] = {item: convert(score) for item, score, _, _ in hits}
            first = first or hits
        return lists, first

    def _exact(self, plan, item_ids: Sequence[str]) -> dict[str, tuple[float, dict[str, Any], dict[str, Any] | None]]:
        """Exact cosine, source and best persona of each item, from the plan's rescoring request."""
        return {i: (s - 1.0, src, p) for i, s, src, p in dsl.parse_hits(self.transport.send(plan.rescore(item_ids)))}

    def persona_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        body = {"ids": list(item_ids)}
        response = self.transport.send(Request("POST", f"/{self.index}/_mget", body, {"_source_includes": "personas.vector"}))
        out = {}
        for doc in response.get("docs", []):
            personas = (doc.get("_source") or {}).get("personas") or []
            if doc.get("found") and personas:
                out[doc["_id"]] = np.asarray([p["vector"] for p in personas], dtype=np.float32)
        return out

    def _item_source(self, item_id: str) -> dict[str, Any]:
        """The item's document without its vectors; NotFoundError when the index lacks it (the clients raise
        on the engines' 404, which says the same)."""
        request = Request("GET", f"/{self.index}/_doc/{item_id}", params={"_source_excludes": "personas.vector"})
        try:
            response = self.transport.send(request)
        except Exception as exc:
            if http_status(exc) != 404 or "index_not_found" in str(exc):
                raise
            response = {"found": False}
        if not response.get("found"):
            raise NotFoundError(f"item {item_id!r} is not in index {self.index!r}")
        return response.get("_source") or {}

    def personas(self, item_id: str) -> list[MatchedPersona]:
        return [MatchedPersona(**{k: p[k] for k in MatchedPersona.model_fields})
                for p in self._item_source(item_id).get("personas", [])]

    def item_card(self, item_id: str) -> ItemCard:
        source = self._item_source(item_id)
        personas = source.get("personas") or []
        if not personas:
            raise NotFoundError(f"item {item_id!r} has no personas in index {self.index!r}")
        cards = [PersonaCard(persona=MatchedPersona(**{k: p[k] for k in MatchedPersona.model_fields}),
                             evidence=[EvidenceSnippet(**e) for e in p.get("evidence", [])]) for p in personas]
        return ItemCard(item_id=item_id, title=source.get("title") or item_id, personas=cards)

    # -- what the index holds, asked once per backend (refresh_metadata() asks again) -------------------
    def refresh_metadata(self) -> None:
        """Forget the cached encoder model, vector mapping and document count, e.g. after the index was
        rebuilt or has grown."""
        for name in ("model_name", "float_vectors", "index_documents"):
            self.__dict__.pop(name, None)

    @cached_property
    def float_vectors(self) -> bool:
        """Whether the engine scores this index's persona vectors unquantised, so knn mode is one request.
        p4r's own mapping is float; a dry run, which reads nothing, assumes it."""
        if isinstance(self.transport, DryRunTransport):
            return True
        try:
            personas = dsl.existing_personas(self.mapping()) or {}
        except Exception as exc:
            if http_status(exc) != 404:
                raise
            return True  # no index yet: the search itself will say so
        vector = personas.get("properties", {}).get("vector", {})
        return scores_float_vectors(self.cluster, vector)

    @cached_property
    def index_documents(self) -> int | None:
        """Lucene documents in the index's primaries, nested personas included (index stats count them;
        `_count` would not). None where it is not known: a dry run reads nothing, a key without the
        `monitor` privilege is refused index stats (403), Elastic's serverless API has none (its spec lists
        no index stats), and a missing index is the search's to report."""
        if isinstance(self.transport, DryRunTransport):
            return None
        try:
            answer = self.transport.send(Request("GET", f"/{self.index}/_stats/docs",
                                                 params={"filter_path": "_all.primaries.docs.count"}))
        except Exception as exc:
            if not 400 <= (http_status(exc) or 0) < 500:
                raise
            log.info("could not read %s's document count (%s); exact mode scores with a script", self.index, exc)
            return None
        return int(((answer or {}).get("_all") or {}).get("primaries", {}).get("docs", {}).get("count", 0)) or None

    @cached_property
    def model_name(self) -> str | None:
        """The encoder the indexed personas were made with."""
        exists = dsl.nested({"exists": {"field": dsl.VECTOR}}, with_inner_hits=False)
        body = {"size": 1, "_source": ["p4r.encoder_model"], "query": exists}
        hits = self.transport.send(Request("POST", f"/{self.index}/_search", body)).get("hits", {}).get("hits", [])
        return (hits[0].get("_source") or {}).get("p4r", {}).get("encoder_model") if hits else None

    def __len__(self) -> int:
        body = {"query": dsl.nested({"exists": {"field": dsl.VECTOR}}, with_inner_hits=False)}
        return int(self.transport.send(Request("POST", f"/{self.index}/_count", body)).get("count", 0))


def bulk_actions(index: str, docs: Iterable[ItemDocument], *, partial: bool) -> list[dict[str, Any]]:
    """The helpers' action format, built from the dialect-neutral bulk lines."""
    lines = dsl.bulk_lines(index, docs, partial=partial)
    actions = []
    for action, source in zip(lines[::2], lines[1::2]):
        op, meta = next(iter(action.items()))
        body = {"_source": source} if op == "index" else {"doc": source["doc"]}
        actions.append({"_op_type": op, "_index": meta["_index"], "_id": meta["_id"], **body})
    return actions


def _item_id(info: dict[str, Any]) -> str:
    return next(iter(info.values()))["_id"]


def _status(info: dict[str, Any]) -> int:
    return int(next(iter(info.values())).get("status", 0))


def record_failures(failures: list[tuple[dict[str, Any], dict[str, Any]]], path: Path | None) -> None:
    if not failures or path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for info, action in failures:
            detail = next(iter(info.values()))
            fh.write(json.dumps({"item_id": action["_id"], "status": detail.get("status"),
                                 "error": detail.get("error"), "action": action["_op_type"]}) + "\n")


class BulkFailedError(P4RError):
    exit_code = 75  # EX_TEMPFAIL: some documents were not written; see the failed-docs file
