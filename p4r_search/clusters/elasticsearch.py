"""Elasticsearch 8.11+ and 9.x: mappings, bulk lines and search plans. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..query import MAX_WINDOW, Fusion, Mode, PersonaQuery
from . import dsl
from .capabilities import CapabilityError, require, supports, vector_score_to_cosine
from .model import Cluster, Request
from .plan import (
    Proposal,
    SearchPlan,
    exact_plan,
    exact_scan,
    knn_alone_answers,
    native_candidates,
    one_request,
    rescore_plan,
)

EXACT_SCRIPT = "cosineSimilarity(params.query_value, 'personas.vector') + 1.0"
# Elasticsearch hands Lucene num_candidates as its k, and wraps a nested field's filter in ToChildBlockJoinQuery
# (KnnVectorQueryBuilder.doToQuery, ESDiversifyingChildrenFloatKnnVectorQuery): dsl.NATIVE_EXACT_* then hold
# with num_candidates at its cap. Run on 8.19.0: tests/test_live_clusters.py.


def vector_mapping(dim: int, m: int = 16, ef_construction: int = 100) -> dict[str, Any]:
    # index_options are explicit: the default changed between versions (int8_hnsw from 8.14, bbq later).
    # Float `hnsw`, not `int8_hnsw`: the kNN scores are then float cosines, so one kNN request ranks and
    # explains exactly (capabilities.scores_float_vectors); what it costs is in docs/compatibility.md
    return {
        "type": "dense_vector",
        "dims": dim,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": m, "ef_construction": ef_construction},
    }


def create_index(index: str, dim: int) -> Request:
    personas = dsl.persona_properties(vector_mapping(dim))
    properties = {**dsl.ITEM_PROPERTIES, "personas": personas, "p4r": dsl.METADATA_PROPERTY}
    return Request("PUT", f"/{index}", {"mappings": {"dynamic_templates": dsl.ATTRIBUTES_AS_KEYWORDS, "properties": properties}})


def put_mapping(index: str, dim: int) -> Request:
    """Attach: add only the personas field (and p4r metadata) to an existing index."""
    properties = {"personas": dsl.persona_properties(vector_mapping(dim)), "p4r": dsl.METADATA_PROPERTY}
    return Request("PUT", f"/{index}/_mapping", {"properties": properties})


def exact_clause(query: PersonaQuery, *, with_inner_hits: bool = True) -> dict[str, Any]:
    """Every persona of an item scored exactly (1 + cosine, painless), the item scored by its best one."""
    score = {
        "script_score": {
            "query": {"match_all": {}},
            "script": {"source": EXACT_SCRIPT, "params": {"query_value": dsl.vector_param(query)}},
        }
    }
    return dsl.nested(score, with_inner_hits=with_inner_hits)


def exact_search(index: str, query: PersonaQuery, size: int, item_ids: Sequence[str] | None) -> Request:
    body = {"size": size, "query": dsl.bool_query([exact_clause(query)], query, item_ids), "_source": ["title"]}
    return Request("POST", f"/{index}/_search", body)


def knn_clause(query: PersonaQuery, extra_filters: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The kNN on the nested persona vectors, the item filters, exclusions and `extra_filters` inside it."""
    knn: dict[str, Any] = {
        "field": dsl.VECTOR,
        "query_vector": dsl.vector_param(query),
        "k": query.num_candidates,
        "num_candidates": dsl.search_breadth(query),
    }
    filters = dsl.filter_clauses(query)
    if excluded := dsl.exclusions(query):
        filters.append({"bool": {"must_not": excluded}})
    filters += extra_filters
    if filters:
        knn["filter"] = filters
    return knn


def knn_query(cluster: Cluster, query: PersonaQuery, extra_filters: Sequence[dict[str, Any]] = (), *,
              with_inner_hits: bool = True) -> dict[str, Any]:
    """The `knn` query (8.12+) inside a `nested` query: a clause for a `bool`, unlike the top-level `knn` section.
    Its `filter` holds the item filters, exclusions and `extra_filters` on item fields: pre-filters, so the
    nearest *matching* items are found. Before 8.15 it has no `k`: it then keeps `num_candidates` per shard."""
    require(cluster, "knn_query")
    knn = knn_clause(query, extra_filters)
    if not supports(cluster, "knn_query_k"):
        del knn["k"]
    return dsl.nested({"knn": knn}, with_inner_hits=with_inner_hits)


def vector_proposal(index: str, cluster: Cluster, query: PersonaQuery) -> Proposal:
    if query.mode is Mode.EXACT or query.candidate_ids is not None:
        return Proposal("vector", exact_search(index, query, query.num_candidates, None), lambda s: s - 1.0)
    require(cluster, "nested_knn")
    knn = {**knn_clause(query), "inner_hits": dsl.inner_hits()}
    body = {"size": query.num_candidates, "knn": knn, "_source": False}
    return Proposal("vector", Request("POST", f"/{index}/_search", body),
                    lambda s: vector_score_to_cosine(s, exact=False))


def fused_retriever(index: str, cluster: Cluster, query: PersonaQuery) -> Proposal | None:
    """One request fused server-side, where the version and licence allow it; else None."""
    if query.candidate_ids is not None or query.mode is Mode.EXACT:
        return None
    bm25 = {"standard": {"query": dsl.bool_query([dsl.bm25_clause(query.text or "")], query)}}
    knn = {"knn": knn_clause(query)}
    window = query.num_candidates
    if query.fusion is Fusion.RRF and supports(cluster, "rrf_retriever") and query.vector_weight == query.text_weight:
        retriever = {"rrf": {"retrievers": [knn, bm25], "rank_window_size": window, "rank_constant": query.rank_constant}}
    elif query.fusion is Fusion.LINEAR and supports(cluster, "linear_retriever"):
        retriever = {"linear": {"rank_window_size": window, "retrievers": [
            {"retriever": knn, "weight": query.vector_weight, "normalizer": "minmax"},
            {"retriever": bm25, "weight": query.text_weight, "normalizer": "minmax"},
        ]}}
    else:
        return None
    # ES's rrf is unweighted (so weights are equal here) and linear is Σ weight·minmax, as p4r_search.fusion
    scale = query.vector_weight if query.fusion is Fusion.RRF else 1.0
    body = {"size": window, "retriever": retriever, "_source": False}
    return Proposal("fused", Request("POST", f"/{index}/_search", body), lambda s: s * scale)


def knn_search(index: str, cluster: Cluster, query: PersonaQuery) -> Request:
    """knn mode in one request: the nested kNN ranks items by their best persona (float cosines on p4r's
    mapping), its inner hit is that persona, and `_source` holds only the title (never the vectors)."""
    require(cluster, "nested_knn")
    knn = {**knn_clause(query), "inner_hits": dsl.inner_hits()}
    return Request("POST", f"/{index}/_search", {"size": query.k, "knn": knn, "_source": ["title"]})


def exact_knn_search(index: str, cluster: Cluster, query: PersonaQuery) -> Request:
    """Exact scoring without a script: the kNN with a filter (the candidate ids, or every item) and
    num_candidates at its cap, which Lucene answers by scoring every matching persona (NATIVE_EXACT_*)."""
    require(cluster, "nested_knn")
    knn = {**knn_clause(query), "k": query.k, "num_candidates": MAX_WINDOW, "inner_hits": dsl.inner_hits()}
    knn.setdefault("filter", [{"match_all": {}}])  # without a filter Lucene only walks the graph
    return Request("POST", f"/{index}/_search", {"size": query.k, "knn": knn, "_source": ["title"]})


def native_request(index: str, cluster: Cluster, query: PersonaQuery, index_documents: int | None) -> Request | None:
    """On float vectors, the one kNN request that answers `query` as exactly as a script would; None where
    only painless can (hybrid and rescore modes, more candidates or a larger index than Lucene scores exactly)."""
    if knn_alone_answers(query):
        return knn_search(index, cluster, query)
    if native_candidates(query):
        return exact_knn_search(index, cluster, query)
    if exact_scan(query) and index_documents is not None and index_documents <= dsl.NATIVE_EXACT_DOCUMENTS:
        return exact_knn_search(index, cluster, query)
    return None


def search_plan(index: str, cluster: Cluster, query: PersonaQuery, float_vectors: bool = True,
                index_documents: int | None = None) -> SearchPlan:
    """`float_vectors`: the index's persona vectors are scored unquantised (p4r's own mapping); then knn
    mode, candidates and exact mode on a small index (`index_documents`, nested ones included) are one kNN
    request without painless. Every other plan scores exactly with a script."""
    require(cluster, "es_min_version")
    if float_vectors and (native := native_request(index, cluster, query, index_documents)):
        return one_request(native)
    if exact_scan(query) and not supports(cluster, "painless"):
        size = f"{index_documents:,} documents" if index_documents else "documents p4r could not count"
        raise CapabilityError(f"{cluster} cannot do this: an exact scan of {index} ({size}; the kNN scans at most "
                              f"{dsl.NATIVE_EXACT_DOCUMENTS:,} exactly) runs painless, and this cluster has no "
                              "lang-painless module; use knn mode, or --candidates, or a node with painless")
    require(cluster, "painless")

    def rescore(ids: Sequence[str]) -> Request:
        return exact_search(index, query, len(ids), ids)

    if query.mode is Mode.EXACT or (query.mode is Mode.KNN and query.candidate_ids is not None):
        # candidates are scored exactly whatever the mode: one scripted request ranks and explains them
        return exact_plan(exact_search(index, query, query.k, None), rescore)
    if query.mode is Mode.KNN:
        return SearchPlan([vector_proposal(index, cluster, query)], rescore)
    if query.mode is Mode.RESCORE:
        return rescore_plan(index, query, exact_clause(query, with_inner_hits=False), rescore)
    if fused := fused_retriever(index, cluster, query):
        return SearchPlan([fused], rescore, keyword_scores=dsl.bm25_of(index, query))
    return SearchPlan([vector_proposal(index, cluster, query), Proposal("bm25", dsl.bm25_search(index, query))], rescore)
