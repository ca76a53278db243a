"""The one place that picks a dialect: the same three functions for either engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from . import elasticsearch, opensearch
from .capabilities import require
from .model import Cluster, Distribution, Request
from .plan import SearchPlan


@dataclass(frozen=True)
class Dialect:
    create_index: Callable[[str, int], Request]
    put_mapping: Callable[[str, int], Request]
    search_plan: Callable[..., SearchPlan]  # (index, cluster, query, float_vectors=True, index_documents=None)
    # whether a whole-index exact plan depends on the index's document count (Elasticsearch scores a small
    # index exactly through the kNN itself): the backend reads it only then
    exact_needs_document_count: bool = False


def dialect_for(cluster: Cluster, os_engine: str = "lucene") -> Dialect:
    """The bodies for this cluster; what it cannot map is refused here, before any request."""
    if cluster.distribution is Distribution.ELASTICSEARCH:
        return Dialect(elasticsearch.create_index, elasticsearch.put_mapping, elasticsearch.search_plan,
                       exact_needs_document_count=True)
    if os_engine == "faiss":
        require(cluster, "faiss_cosine")
    return Dialect(
        partial(opensearch.create_index, engine=os_engine),
        partial(opensearch.put_mapping, engine=os_engine),
        partial(opensearch.search_plan, engine=os_engine),
    )
