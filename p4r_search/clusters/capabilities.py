"""The one table of what each engine version and licence can do, and what to use instead."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import P4RError
from .model import Cluster, Distribution

ES, OS = Distribution.ELASTICSEARCH, Distribution.OPENSEARCH
PAID = ("trial", "enterprise")


class CapabilityError(P4RError):
    """The cluster cannot do what was asked; the message says why and what to use instead."""

    exit_code = 69  # EX_UNAVAILABLE


Version = tuple[int, int, int]


@dataclass(frozen=True)
class Capability:
    distribution: Distribution | None  # None: both
    since: Version
    licenses: tuple[str, ...] | None  # None: any licence
    why: str
    instead: str
    plugin: str | None = None  # a plugin or module that must be on every node, where the cluster says which are
    source: str = ""  # where the fact is stated, or the real engine it was run on
    broken: tuple[tuple[Version, Version], ...] = ()  # [from, to) patch ranges where it misbehaves


K_NN = "https://github.com/opensearch-project/k-NN/pull/"
ES_DOCS = "https://www.elastic.co/guide/en/elasticsearch/reference/"
OS_DOCS = "https://docs.opensearch.org/latest/"
RUN = "run on OpenSearch 2.19.1 and 3.5.0 (engines/)"

TABLE: dict[str, Capability] = {
    # -- Elasticsearch ------------------------------------------------------------------------------------
    "es_min_version": Capability(ES, (8, 11, 0), None, "p4r needs Elasticsearch 8.11 or later", "upgrade",
                                 source=ES_DOCS + "8.11/knn-search.html#nested-knn-search (nested kNN from 8.11)"),
    "nested_knn": Capability(ES, (8, 11, 0), None, "kNN search on nested vectors needs Elasticsearch 8.11",
                             "use --mode exact (script_score), or upgrade",
                             source=ES_DOCS + "8.11/knn-search.html#nested-knn-search"),
    # the `knn` query (not the top-level section) can sit in a team's own bool: a nested query around it, its
    # `filter` over the item's fields a pre-filter (query-dsl-knn-query, "Knn query inside a nested query")
    "knn_query": Capability(ES, (8, 12, 0), None, "the knn query (a clause inside your own bool) needs 8.12",
                            "use the top-level knn section (PersonaClauses.knn_section), or upgrade",
                            source="https://github.com/elastic/elasticsearch/pull/98916; "
                                   + ES_DOCS + "8.12/query-dsl-knn-query.html"),
    # without k the knn query keeps num_candidates per shard (k = size from #118774, backported to 8.x)
    "knn_query_k": Capability(ES, (8, 15, 0), None, "the knn query's k needs 8.15",
                              "the clause keeps num_candidates items per shard; filter inside it",
                              source="https://github.com/elastic/elasticsearch/pull/110233"),
    "knn_multiple_inner_hits": Capability(ES, (8, 13, 0), None, "several inner hits per kNN result need 8.13",
                                          "ask for one persona per item",
                                          source=ES_DOCS + "8.13/knn-search.html#nested-knn-search"),
    "rrf_retriever": Capability(ES, (8, 16, 0), PAID, "the rrf retriever needs 8.16 and an enterprise or trial licence",
                                "p4r fuses client-side over two requests instead",
                                source=ES_DOCS + "8.16/retriever.html#rrf-retriever"),
    # minmax returned the raw score on a one-hit or all-equal list until elastic/elasticsearch#128689, backported
    # to 8.18 (#128756) and 8.19 (#128754): fixed in 8.18.3, 8.19.0 and 9.1.0; no 9.0 backport is listed
    "linear_retriever": Capability(ES, (8, 18, 0), PAID,
                                   "the linear retriever needs 8.18 (8.18.3+, 8.19, 9.1+ for a correct minmax) and an "
                                   "enterprise or trial licence", "p4r fuses client-side over two requests instead",
                                   source="https://github.com/elastic/elasticsearch/pull/120222; #128689",
                                   broken=(((8, 18, 0), (8, 18, 3)), ((9, 0, 0), (9, 1, 0)))),
    # -- OpenSearch -------------------------------------------------------------------------------------
    "os_knn_query": Capability(OS, (2, 12, 0), None, "p4r needs OpenSearch 2.12 or later with the k-NN plugin",
                               "upgrade, or install opensearch-knn", plugin="opensearch-knn", source=RUN),
    # a nested knn takes a filter on parent fields (efficient filtering): the k nearest *matching* items
    "knn_nested_filter": Capability(OS, (2, 12, 0), None, "filters inside a nested knn need OpenSearch 2.12",
                                    "upgrade", plugin="opensearch-knn", source=K_NN + "1372; " + RUN),
    "knn_method_parameters": Capability(OS, (2, 16, 0), None, "query-time ef_search needs OpenSearch 2.16",
                                        "the index's default ef_search (k) is used", plugin="opensearch-knn",
                                        source=OS_DOCS + "query-dsl/specialized/k-nn/#ef_search; " + RUN),
    "faiss_cosine": Capability(OS, (2, 19, 0), None,
                               "faiss HNSW supports cosinesimil only from OpenSearch 2.19 (before, FaissHNSWMethod "
                               "takes l2, innerproduct and hamming, and the mapping is refused)",
                               "use --os-engine lucene (the default), or upgrade", plugin="opensearch-knn",
                               source=K_NN + "2376"),
    "expand_nested_docs": Capability(OS, (2, 19, 0), None, "expand_nested_docs needs OpenSearch 2.19",
                                     "the nested kNN query scores only the nested documents it found",
                                     source=OS_DOCS + "vector-search/specialized-operations/nested-search-knn/"),
    # the two search-pipeline processors live in the neural-search plugin, not in core: without it the
    # pipeline is refused ("Invalid processor type normalization-processor", run on OpenSearch 3.5.0)
    # and p4r fuses the two lists client-side instead. Weights must each be in [0, 1] and sum to 1
    # (ScoreCombinationUtil.validateWeights): p4r sends them normalised.
    "normalization_processor": Capability(OS, (2, 10, 0), None,
                                          "server-side hybrid needs OpenSearch 2.10 and the neural-search plugin",
                                          "p4r fuses client-side over two requests instead",
                                          plugin="opensearch-neural-search",
                                          source=OS_DOCS + "search-plugins/search-pipelines/normalization-processor/; "
                                                 "run on OpenSearch 2.19.1 and 3.5.0 without the plugin"),
    "score_ranker_rrf": Capability(OS, (2, 19, 0), None,
                                   "server-side RRF (score-ranker-processor) needs OpenSearch 2.19 and neural-search",
                                   "p4r fuses client-side over two requests instead", plugin="opensearch-neural-search",
                                   source=OS_DOCS + "search-plugins/search-pipelines/score-ranker-processor/"),
    # 2.19.x and 3.0.x read combination.parameters.rank_constant (and ignore combination.rank_constant);
    # 3.1 reads combination.rank_constant and takes combination.parameters.weights (summing to 1)
    "score_ranker_top_level_rank_constant": Capability(OS, (3, 1, 0), None,
                                                       "combination.rank_constant is read from OpenSearch 3.1",
                                                       "p4r sends combination.parameters.rank_constant",
                                                       plugin="opensearch-neural-search",
                                                       source="issue 9's reading of neural-search's "
                                                              "RRFProcessorFactory at 2.19.0, 3.0.0 and 3.1.0; "
                                                              "not run here (no neural-search on Maven Central)"),
    "score_ranker_weights": Capability(OS, (3, 1, 0), None, "weighted RRF in the score ranker needs OpenSearch 3.1",
                                       "p4r fuses weighted RRF client-side", plugin="opensearch-neural-search",
                                       source=OS_DOCS + "search-plugins/search-pipelines/score-ranker-processor/"),
    # new indices score with Lucene's BM25Similarity, whose numerator lost the k1 + 1 factor (LUCENE-8563); 2.x and
    # Elasticsearch keep LegacyBM25Similarity. Measured on the same personas: 3.5.0 gave 0.45-0.48x of 2.19.1's,
    # 8.19.0's and tantivy's BM25 (tests/test_live_team_requests.py); p4r multiplies by 1 + k1 to compare them
    "bm25_without_k1_plus_1": Capability(OS, (3, 0, 0), None, "BM25 scores lost the k1 + 1 factor in OpenSearch 3.0",
                                         "p4r scales them back by 1 + k1 (2.2)",
                                         source="https://github.com/opensearch-project/OpenSearch/issues/17315; "
                                                "run on OpenSearch 3.5.0 and 2.19.1"),
    # -- both ----------------------------------------------------------------------------------------------
    # exact scoring and every plan's stage 2 are painless script_score: a node without the module answers 400
    "painless": Capability(None, (0, 0, 0), None,
                           "exact scoring and stage-2 rescoring run painless script_score, and this cluster has "
                           "no lang-painless module", "use a distribution that ships lang-painless (all default ones do)",
                           plugin="lang-painless", source="run on the Elasticsearch 8.19.0 integration-test zip"),
}


def supports(cluster: Cluster, feature: str) -> bool:
    cap = TABLE[feature]
    if cap.distribution not in (None, cluster.distribution) or cluster.version < cap.since:
        return False
    if any(low <= cluster.version < high for low, high in cap.broken):
        return False
    if cap.plugin and cluster.plugins is not None and cap.plugin not in cluster.plugins:
        return False
    return cap.licenses is None or (cluster.license or "basic") in cap.licenses


def require(cluster: Cluster, feature: str) -> None:
    if not supports(cluster, feature):
        cap = TABLE[feature]
        raise CapabilityError(f"{cluster} cannot do this: {cap.why}; {cap.instead}")


def vector_score_to_cosine(score: float, *, exact: bool) -> float:
    """Scores back to cosine. Exact (painless `cosineSimilarity + 1.0`) is 1+cos everywhere. Approximate:
    Elasticsearch `cosine` and OpenSearch `cosinesimil` score (1+cos)/2 (run on Elasticsearch 8.19.0 and on
    OpenSearch 2.19.1 and 3.5.0 with lucene; faiss, which has cosinesimil from 2.19 only, per its docs)."""
    return score - 1.0 if exact else 2.0 * score - 1.0


# Which persona-vector mappings the engine scores unquantised, so that a kNN score is a float cosine and knn
# mode needs no exact rescoring. Elasticsearch: `hnsw` and `flat` are float; `int8_*`, `int4_*` and `bbq_*` score
# on quantised vectors (within 0.02 of the cosine on 8.19.0, tests/test_live_clusters.py, when p4r mapped
# int8_hnsw), and without index_options 8.14+ defaults to int8_hnsw and 9.1+ to bbq_hnsw at 384+ dims
# (ES_DOCS + "current/dense-vector.html#dense-vector-index-options"). OpenSearch: a `knn_vector` is float unless
# it has a byte or binary data_type, on_disk mode, a compression_level above 1x or a quantising encoder (sq, pq)
# (OS_DOCS + "field-types/supported-field-types/knn-memory-optimized/").
ES_FLOAT_INDEX_OPTIONS = ("hnsw", "flat")
OS_FLOAT_ENCODERS = ("flat",)


def scores_float_vectors(cluster: Cluster, vector_mapping: dict) -> bool:
    """Whether the engine's kNN scores on this `personas.vector` mapping are float cosines."""
    if cluster.distribution is ES:
        options = vector_mapping.get("index_options") or {}
        default = "hnsw" if cluster.version < (8, 14, 0) else "int8_hnsw"
        return options.get("type", default) in ES_FLOAT_INDEX_OPTIONS
    encoder = ((vector_mapping.get("method") or {}).get("parameters") or {}).get("encoder") or {}
    return (vector_mapping.get("data_type", "float") == "float" and vector_mapping.get("mode") != "on_disk"
            and vector_mapping.get("compression_level", "1x") == "1x"
            and encoder.get("name", "flat") in OS_FLOAT_ENCODERS)


def markdown_table() -> str:
    """The table as docs/compatibility.md shows it (a test keeps the two equal)."""
    rows = ["| capability | engine | from | licence | plugin | not on | source |", "|---|---|---|---|---|---|---|"]
    for name, cap in TABLE.items():
        engine = cap.distribution.value if cap.distribution else "both"
        since = ".".join(map(str, cap.since)) if cap.since > (0, 0, 0) else "any"
        broken = ", ".join(f"{'.'.join(map(str, a))} ≤ v < {'.'.join(map(str, b))}" for a, b in cap.broken)
        rows.append(f"| `{name}` | {engine} | {since} | {' or '.join(cap.licenses) if cap.licenses else 'any'} | "
                    f"{cap.plugin or ''} | {broken} | {cap.source} |")
    return "\n".join(rows)
