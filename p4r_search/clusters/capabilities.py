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
    distribution: Distribution
    since: tuple[int, int, int]
    licenses: tuple[str, ...] | None  # None: any licence
    why: str
    instead: str


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
    "os_knn_query": Capability(OS, (2, 12, 0), None, "p4r needs OpenSearch 2.12 or later", "upgrade"),
    "normalization_processor": Capability(OS, (2, 10, 0), None, "hybrid search needs OpenSearch 2.10", "upgrade"),
    "score_ranker_rrf": Capability(OS, (2, 19, 0), None, "RRF (score-ranker-processor) needs OpenSearch 2.19",
                                   "use --fusion linear, or upgrade"),
    "expand_nested_docs": Capability(OS, (2, 19, 0), None, "expand_nested_docs needs OpenSearch 2.19",
                                     "the nested kNN query scores only the nested documents it found"),
    "es_min_version": Capability(ES, (8, 11, 0), None, "p4r needs Elasticsearch 8.11 or later", "upgrade"),
}


def supports(cluster: Cluster, feature: str) -> bool:
    cap = TABLE[feature]
    if cluster.distribution is not cap.distribution or cluster.version < cap.since:
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
