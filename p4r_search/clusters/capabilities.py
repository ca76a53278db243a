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


@dataclass(frozen=True)
class Capability:
    distribution: Distribution | None  # None: both
    since: tuple[int, int, int]
    licenses: tuple[str, ...] | None  # None: any licence
    why: str
    instead: str
    plugin: str | None = None  # a plugin or module that must be on every node, where the cluster says which are
    source: str = ""  # where the fact is stated, or the real engine it was run on


TABLE: dict[str, Capability] = {
    "nested_knn": Capability(ES, (8, 11, 0), None, "kNN search on nested vectors needs Elasticsearch 8.11",
                             "use --mode exact (script_score), or upgrade"),
    "knn_multiple_inner_hits": Capability(ES, (8, 13, 0), None, "several inner hits per kNN result need 8.13",
                                          "ask for one persona per item"),
    "rrf_retriever": Capability(ES, (8, 16, 0), PAID, "the rrf retriever needs 8.16 and an enterprise or trial licence",
                                "p4r fuses client-side over two requests instead"),
    "linear_retriever": Capability(ES, (8, 18, 0), PAID,
                                   "the linear retriever needs 8.18 and an enterprise or trial licence",
                                   "p4r fuses client-side over two requests instead"),
    "os_knn_query": Capability(OS, (2, 12, 0), None, "p4r needs OpenSearch 2.12 or later with the k-NN plugin",
                               "upgrade, or install opensearch-knn", plugin="opensearch-knn",
                               source="run on OpenSearch 2.19.1 and 3.5.0 (engines/)"),
    # the two search-pipeline processors live in the neural-search plugin, not in core: without it the
    # pipeline is refused ("Invalid processor type normalization-processor", run on OpenSearch 3.5.0)
    # and p4r fuses the two lists client-side instead
    "normalization_processor": Capability(OS, (2, 10, 0), None,
                                          "server-side hybrid needs OpenSearch 2.10 and the neural-search plugin",
                                          "p4r fuses client-side over two requests instead",
                                          plugin="opensearch-neural-search",
                                          source="run on OpenSearch 2.19.1 and 3.5.0 without the plugin"),
    "score_ranker_rrf": Capability(OS, (2, 19, 0), None,
                                   "server-side RRF (score-ranker-processor) needs OpenSearch 2.19 and neural-search",
                                   "p4r fuses client-side over two requests instead", plugin="opensearch-neural-search",
                                   source="run on OpenSearch 2.19.1 and 3.5.0 without the plugin"),
    # exact scoring and every plan's stage 2 are painless script_score: a node without the module answers 400
    "painless": Capability(None, (0, 0, 0), None,
                           "exact scoring and stage-2 rescoring run painless script_score, and this cluster has "
                           "no lang-painless module", "use a distribution that ships lang-painless (all default ones do)",
                           plugin="lang-painless", source="run on the Elasticsearch 8.19.0 integration-test zip"),
    "knn_method_parameters": Capability(OS, (2, 16, 0), None, "query-time ef_search needs OpenSearch 2.16",
                                        "the index's default ef_search (k) is used", plugin="opensearch-knn",
                                        source="https://opensearch.org/docs/latest/query-dsl/specialized/k-nn/"
                                               "#ef_search; run on OpenSearch 2.19.1 and 3.5.0"),
    "expand_nested_docs": Capability(OS, (2, 19, 0), None, "expand_nested_docs needs OpenSearch 2.19",
                                     "the nested kNN query scores only the nested documents it found"),
    "es_min_version": Capability(ES, (8, 11, 0), None, "p4r needs Elasticsearch 8.11 or later", "upgrade"),
}


def supports(cluster: Cluster, feature: str) -> bool:
    cap = TABLE[feature]
    if cap.distribution not in (None, cluster.distribution) or cluster.version < cap.since:
        return False
    if cap.plugin and cluster.plugins is not None and cap.plugin not in cluster.plugins:
        return False
    return cap.licenses is None or (cluster.license or "basic") in cap.licenses


def require(cluster: Cluster, feature: str) -> None:
    if not supports(cluster, feature):
        cap = TABLE[feature]
        raise CapabilityError(f"{cluster} cannot do this: {cap.why}; {cap.instead}")


def vector_score_to_cosine(cluster: Cluster, score: float, *, exact: bool, engine: str = "lucene") -> float:
    """Scores back to cosine. Exact (painless `cosineSimilarity + 1.0`) is 1+cos everywhere. Approximate:
    Elasticsearch cosine is (1+cos)/2; OpenSearch lucene is (1+cos)/2; OpenSearch faiss cosinesimil and the
    knn_score script give 1+cos before 2.19 and (1+cos)/2 from 2.19."""
    if exact:
        return score - 1.0
    if cluster.distribution is OS and engine == "faiss" and cluster.version < (2, 19, 0):
        return score - 1.0
    return 2.0 * score - 1.0
