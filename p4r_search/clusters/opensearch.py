"""OpenSearch 2.12+ and 3.x: mappings, bulk lines, search pipelines and search plans. Pure functions.

The vector field is a `knn_vector` with an explicit HNSW method on the lucene or faiss engine (never
nmslib, which cannot create indices from 3.0).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ..errors import ChoiceError
from ..query import MAX_WINDOW, Fusion, Mode, PersonaQuery
from . import dsl
from .capabilities import require, supports, vector_score_to_cosine
from .model import Cluster, Request
from .plan import Proposal, SearchPlan, exact_plan, knn_alone_answers, native_candidates, one_request, rescore_plan

ENGINES = ("lucene", "faiss")
BM25_K1 = 1.2  # the default of both BM25 similarities
EXACT_SCRIPT = "cosineSimilarity(params.query_value, doc[params.field]) + 1.0"


def vector_mapping(dim: int, engine: str = "lucene", m: int = 16, ef_construction: int = 100) -> dict[str, Any]:
    if engine not in ENGINES:
        raise ChoiceError("OpenSearch vector engine", engine, ENGINES)
    return {
        "type": "knn_vector",
        "dimension": dim,
        "method": {
            "name": "hnsw",
            "engine": engine,
            "space_type": "cosinesimil",
            "parameters": {"m": m, "ef_construction": ef_construction},
        },
    }


def create_index(index: str, dim: int, engine: str = "lucene") -> Request:
    properties = {**dsl.ITEM_PROPERTIES, "personas": dsl.persona_properties(vector_mapping(dim, engine)), "p4r": dsl.METADATA_PROPERTY}
    body = {
        "settings": {"index": {"knn": True}},
        "mappings": {"dynamic_templates": dsl.ATTRIBUTES_AS_KEYWORDS, "properties": properties},
    }
    return Request("PUT", f"/{index}", body)


def put_mapping(index: str, dim: int, engine: str = "lucene") -> Request:
    properties = {"personas": dsl.persona_properties(vector_mapping(dim, engine)), "p4r": dsl.METADATA_PROPERTY}
    return Request("PUT", f"/{index}/_mapping", {"properties": properties})


def exact_clause(query: PersonaQuery, *, with_inner_hits: bool = True) -> dict[str, Any]:
    """Every persona of an item scored exactly (1 + cosine, painless), the item scored by its best one."""
    score = {
        "script_score": {
            "query": {"match_all": {}},
            "script": {
                "source": EXACT_SCRIPT,
                "lang": "painless",
                "params": {"field": dsl.VECTOR, "query_value": dsl.vector_param(query)},
            },
        }
    }
    return dsl.nested(score, with_inner_hits=with_inner_hits)


def exact_search(index: str, query: PersonaQuery, size: int, item_ids: Sequence[str] | None) -> Request:
    body = {"size": size, "query": dsl.bool_query([exact_clause(query)], query, item_ids), "_source": ["title"]}
    return Request("POST", f"/{index}/_search", body)


def knn_clause(cluster: Cluster, query: PersonaQuery, extra_filters: Sequence[dict[str, Any]] = (), *,
               with_inner_hits: bool, k: int | None = None) -> dict[str, Any]:
    require(cluster, "os_knn_query")
    knn: dict[str, Any] = {"vector": dsl.vector_param(query), "k": k or query.num_candidates}
    if supports(cluster, "knn_method_parameters"):
        # without it ef_search is k: on 5,000 random 384-d items, top-10 recall was 0.62 to 0.96 across index
        # builds on OpenSearch 3.5.0; with 200 it was 1.0 on 3.5.0 and 0.93 to 0.99 on 2.19.1 (3 builds each)
        knn["method_parameters"] = {"ef_search": dsl.search_breadth(query)}
    if supports(cluster, "expand_nested_docs"):
        knn["expand_nested_docs"] = True  # score every persona of a matched item, so max is over all of them
    if knn_filter := dsl.parent_filter(query, extra_filters):
        # inside the knn, so that it finds the k nearest *matching* items: as a bool filter around it, it
        # would find k items and drop the ones that do not match (a post-filter)
        require(cluster, "knn_nested_filter")
        knn["filter"] = knn_filter
    return dsl.nested({"knn": {dsl.VECTOR: knn}}, with_inner_hits=with_inner_hits)


def vector_proposal(index: str, cluster: Cluster, query: PersonaQuery, engine: str) -> Proposal:
    if query.mode is Mode.EXACT or query.candidate_ids is not None:
        return Proposal("vector", exact_search(index, query, query.num_candidates, None), lambda s: s - 1.0)
    body = {"size": query.num_candidates, "query": dsl.bool_query([knn_clause(cluster, query, with_inner_hits=True)], query),
            "_source": False}
    return Proposal("vector", Request("POST", f"/{index}/_search", body),
                    lambda s: vector_score_to_cosine(s, exact=False))


def knn_search(index: str, cluster: Cluster, query: PersonaQuery) -> Request:
    """knn mode in one request: the nested kNN (every persona of a found item scored, from 2.19) ranks items
    by their best persona, its inner hit is that persona, `_source` holds only the title (never the vectors)."""
    body = {"size": query.k, "query": dsl.bool_query([knn_clause(cluster, query, with_inner_hits=True)], query),
            "_source": ["title"]}
    return Request("POST", f"/{index}/_search", body)


def exact_knn_search(index: str, cluster: Cluster, query: PersonaQuery) -> Request:
    """Candidates scored exactly without a script (lucene engine): the nested kNN with the ids in its filter
    and k at its cap, which Lucene answers by scoring every persona of those items (dsl.NATIVE_EXACT_ITEMS).
    The k-NN plugin gives Lucene max(k, ef_search) and wraps a parent filter in ToChildBlockJoinQuery
    (KNNQueryFactory.create, BaseQueryFactory.getFilterQuery); run on 2.19.1 and 3.5.0."""
    clause = knn_clause(cluster, query, with_inner_hits=True, k=MAX_WINDOW)
    return Request("POST", f"/{index}/_search", {"size": query.k, "query": dsl.bool_query([clause], query),
                                                 "_source": ["title"]})


def native_request(index: str, cluster: Cluster, query: PersonaQuery, engine: str) -> Request | None:
    """On float vectors, the one kNN request that answers `query` as exactly as a script would; None where
    a script must. faiss's filtered search has rules of its own (filtered_exact_search_threshold), not run
    here (the k-NN zip has no native libraries): its candidates keep the script."""
    if knn_alone_answers(query):
        return knn_search(index, cluster, query)
    if engine == "lucene" and native_candidates(query):
        return exact_knn_search(index, cluster, query)
    return None


def search_pipeline(cluster: Cluster, query: PersonaQuery) -> tuple[str, dict[str, Any]]:
    """The hybrid pipeline: min-max + weighted arithmetic mean (linear), or RRF (2.19+). Named by content.
    Weights go normalised: each in [0, 1], summing to 1 (ScoreCombinationUtil.validateWeights)."""
    weights = normalised_weights(query)
    if query.fusion is Fusion.RRF:
        require(cluster, "score_ranker_rrf")
        combination: dict[str, Any] = {"technique": "rrf"}
        if supports(cluster, "score_ranker_top_level_rank_constant"):
            combination["rank_constant"] = query.rank_constant
            combination["parameters"] = {"weights": weights}
        else:
            combination["parameters"] = {"rank_constant": query.rank_constant}
        processor = {"score-ranker-processor": {"combination": combination}}
    else:
        require(cluster, "normalization_processor")
        processor = {
            "normalization-processor": {
                "normalization": {"technique": "min_max"},
                # order follows the hybrid query's sub-queries: vector first, then BM25
                "combination": {"technique": "arithmetic_mean", "parameters": {"weights": weights}},
            }
        }
    body = {"description": "p4r-search hybrid persona fusion", "phase_results_processors": [processor]}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"p4r-{query.fusion.value}-{digest}", body


def normalised_weights(query: PersonaQuery) -> list[float]:
    total = query.vector_weight + query.text_weight
    vector = round(query.vector_weight / total, 6)
    return [vector, round(1.0 - vector, 6)]


def hybrid_proposal(index: str, cluster: Cluster, query: PersonaQuery, pipeline: str) -> Proposal:
    vector = dsl.bool_query([knn_clause(cluster, query, with_inner_hits=False)], query)
    bm25 = dsl.bool_query([dsl.bm25_clause(query.text or "")], query)
    body = {"size": query.num_candidates, "query": {"hybrid": {"queries": [vector, bm25]}}, "_source": False}
    # the pipeline's weights sum to 1, p4r_search.fusion's need not: scale back by their sum. RRF before 3.1
    # is unweighted (only sent with equal weights): Σ 1/(k+rank) against p4r's Σ w/(k+rank)
    total = query.vector_weight + query.text_weight
    weighted = query.fusion is Fusion.LINEAR or supports(cluster, "score_ranker_weights")
    scale = total if weighted else query.vector_weight
    return Proposal("fused", Request("POST", f"/{index}/_search", body, {"search_pipeline": pipeline}), lambda s: s * scale)


def server_side_fusion(cluster: Cluster, query: PersonaQuery) -> bool:
    """A search pipeline can fuse this query: the processor is there, and the fusion is one it computes."""
    if query.fusion is Fusion.RRF:
        equal = query.vector_weight == query.text_weight
        return supports(cluster, "score_ranker_rrf") and (equal or supports(cluster, "score_ranker_weights"))
    return supports(cluster, "normalization_processor")


def search_plan(index: str, cluster: Cluster, query: PersonaQuery, engine: str = "lucene",
                float_vectors: bool = True, index_documents: int | None = None) -> SearchPlan:
    """`float_vectors`: the index's persona vectors are scored unquantised (p4r's own mapping, on either
    engine). knn mode on such an index runs without painless (which every OpenSearch distribution
    ships), and candidates too on the lucene engine. A whole-index exact scan stays scripted, so
    `index_documents` is not used."""
    require(cluster, "os_knn_query")
    if float_vectors and (native := native_request(index, cluster, query, engine)):
        return one_request(native)
    require(cluster, "painless")

    def rescore(ids: Sequence[str]) -> Request:
        return exact_search(index, query, len(ids), ids)

    if query.mode is Mode.EXACT or (query.mode is Mode.KNN and query.candidate_ids is not None):
        # candidates are scored exactly whatever the mode: one scripted request ranks and explains them
        return exact_plan(exact_search(index, query, query.k, None), rescore)
    if query.mode is Mode.KNN:
        return SearchPlan([vector_proposal(index, cluster, query, engine)], rescore)
    if query.mode is Mode.RESCORE:
        return rescore_plan(index, query, exact_clause(query, with_inner_hits=False), rescore, keyword_scale(cluster))
    if query.candidate_ids is not None or not server_side_fusion(cluster, query):
        # candidates are scored exactly; weighted RRF, or a cluster without the processor: fused client-side
        scale = keyword_scale(cluster)
        bm25 = Proposal("bm25", dsl.bm25_search(index, query), lambda s: s * scale)
        return SearchPlan([vector_proposal(index, cluster, query, engine), bm25], rescore, keyword_scale=scale)
    name, body = search_pipeline(cluster, query)
    return SearchPlan([hybrid_proposal(index, cluster, query, name)], rescore,
                      setup=[Request("PUT", f"/_search/pipeline/{name}", body)], keyword_scores=dsl.bm25_of(index, query),
                      keyword_scale=keyword_scale(cluster))


def keyword_scale(cluster: Cluster) -> float:
    """OpenSearch 3.x scores BM25 without Lucene's old k1 + 1 factor (2.2 at k1 = 1.2): scale it back."""
    return 1.0 + BM25_K1 if supports(cluster, "bm25_without_k1_plus_1") else 1.0
