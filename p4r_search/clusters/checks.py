"""Small read-only requests that check an index rather than search it. Pure: no I/O.

What they serve: which of some ids the index holds (history and candidates the index lacks are skipped and
reported), how many items pass some filters, which values a filter field has (to say why a result is
empty, e.g. `categories=dresses` where the index has `Dresses`). `backends/cluster.py` sends them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..query import values_like
from . import dsl
from .model import Request

VALUES_SHOWN = 100  # distinct values asked for per filter field


@dataclass(frozen=True)
class Restriction:
    """Filters, candidates and exclusions without a vector: the parts of a query that `dsl` restricts items with
    (`dsl.filter_clauses` and `dsl.exclusions` read only these three attributes)."""

    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    candidate_ids: tuple[str, ...] | None = None
    exclude_ids: frozenset[str] = frozenset()


def with_personas() -> dict[str, Any]:
    """Documents that hold persona vectors: an attached index may hold others."""
    return dsl.nested({"exists": {"field": dsl.VECTOR}}, with_inner_hits=False)


def count_items(index: str, restriction: Restriction) -> Request:
    return Request("POST", f"/{index}/_count", {"query": dsl.bool_query([with_personas()], restriction)})


def present_ids(index: str, item_ids: Iterable[str]) -> Request:
    """An `_mget` that returns one persona id per document at most: enough to know it has personas."""
    return Request("POST", f"/{index}/_mget", {"ids": list(item_ids)}, {"_source_includes": f"{dsl.PATH}.persona_id"})


def parse_present(response: Mapping[str, Any]) -> set[str]:
    return {doc["_id"] for doc in response.get("docs", [])
            if doc.get("found") and (doc.get("_source") or {}).get(dsl.PATH)}


def filter_values(index: str, field_name: str, like: str | None = None, size: int = VALUES_SHOWN) -> Request:
    """The most common values of a keyword field among documents with personas (a `terms` aggregation); with
    `like`, only values equal to it ignoring case (a `term` query with `case_insensitive`, ES 7.10+ and
    OpenSearch)."""
    restrict: list[dict[str, Any]] = [with_personas()]
    if like is not None:
        restrict.append({"term": {field_name: {"value": like, "case_insensitive": True}}})
    body = {"size": 0, "query": {"bool": {"filter": restrict}},
            "aggs": {"values": {"terms": {"field": field_name, "size": size}}}}
    return Request("POST", f"/{index}/_search", body)


def parse_values(response: Mapping[str, Any], like: str | None = None) -> list[str]:
    """The aggregation's values; with `like`, those equal to it ignoring case (the documents that matched it
    carry their other values of the field too)."""
    buckets = (response.get("aggregations") or {}).get("values", {}).get("buckets", [])
    values = [str(b.get("key_as_string", b.get("key"))) for b in buckets]
    return values_like(values, like)


def restriction(filters: Mapping[str, Sequence[str]], candidate_ids: Sequence[str] | None,
                exclude_ids: Iterable[str]) -> Restriction:
    return Restriction({k: tuple(v) for k, v in filters.items()},
                       None if candidate_ids is None else tuple(candidate_ids), frozenset(exclude_ids))
