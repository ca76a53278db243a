"""The one place that picks a dialect: the same three functions for either engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..query import PersonaQuery
from . import elasticsearch, opensearch
from .model import Cluster, Distribution, Request
from .plan import SearchPlan


@dataclass(frozen=True)
class Dialect:
    create_index: Callable[[str, int], Request]
    put_mapping: Callable[[str, int], Request]
    search_plan: Callable[[str, Cluster, PersonaQuery], SearchPlan]


def dialect_for(cluster: Cluster, os_engine: str = "lucene") -> Dialect:
    if cluster.distribution is Distribution.ELASTICSEARCH:
        return Dialect(elasticsearch.create_index, elasticsearch.put_mapping, elasticsearch.search_plan)
    return Dialect(
        partial(opensearch.create_index, engine=os_engine),
        partial(opensearch.put_mapping, engine=os_engine),
        partial(opensearch.search_plan, engine=os_engine),
    )
