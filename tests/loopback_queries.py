"""The few read requests the loopback STAND-IN (loopback_cluster.py) evaluates over its stored documents.

Enough for p4r's index checks (p4r_search/clusters/checks.py), the way the real servers answer them:
`_count` and a `size: 0` `_search` with one `terms` aggregation, over queries made of `bool` (must, filter,
must_not), `nested` around `exists`, `ids`, `terms` and `term` (with `case_insensitive`); and `_mget` with
`_source_includes`. It is not a search engine: no scoring, no analysis; keyword fields compare as strings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qs


class Unsupported(ValueError):
    """A query the stand-in does not evaluate: answered with a 400, so a test sees it at once."""


def field_values(source: dict[str, Any], path: str) -> list[str]:
    """The keyword values at a dotted path (lists flattened), as strings."""
    values: list[Any] = [source]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in values:
            got = v.get(part) if isinstance(v, dict) else None
            nxt += got if isinstance(got, list) else [] if got is None else [got]
        values = nxt
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values if not isinstance(v, dict)]


def matches(doc_id: str, source: dict[str, Any], query: dict[str, Any] | None) -> bool:
    if not query:
        return True
    (kind, body), = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        required = [*body.get("must", []), *body.get("filter", [])]
        return (all(matches(doc_id, source, q) for q in required)
                and not any(matches(doc_id, source, q) for q in body.get("must_not", [])))
    if kind == "nested" and set(body["query"]) == {"exists"}:
        leaf = body["query"]["exists"]["field"].removeprefix(body["path"] + ".")
        children = source.get(body["path"]) or []
        return any(isinstance(c, dict) and c.get(leaf) is not None for c in children)
    if kind == "ids":
        return doc_id in body["values"]
    if kind == "terms":
        (name, wanted), = body.items()
        return bool(set(field_values(source, name)) & {str(w) for w in wanted})
    if kind == "term":
        (name, spec), = body.items()
        spec = spec if isinstance(spec, dict) else {"value": spec}
        fold = str.casefold if spec.get("case_insensitive") else str
        return fold(str(spec["value"])) in {fold(v) for v in field_values(source, name)}
    raise Unsupported(f"the stand-in does not evaluate a {kind!r} query")


def count(docs: dict[str, dict[str, Any]], body: dict[str, Any] | None) -> dict[str, Any]:
    n = sum(matches(i, s, (body or {}).get("query")) for i, s in docs.items())
    return {"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}


def aggregate(docs: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """A `size: 0` search with one `terms` aggregation named by the caller."""
    if body.get("size") != 0 or len(body.get("aggs", {})) != 1:
        raise Unsupported("the stand-in answers only a size-0 search with one terms aggregation")
    (name, agg), = body["aggs"].items()
    terms = agg["terms"]
    hits = [(i, s) for i, s in docs.items() if matches(i, s, body.get("query"))]
    counts = Counter(v for _, s in hits for v in set(field_values(s, terms["field"])))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: terms.get("size", 10)]
    return {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": []},
            "aggregations": {name: {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0,
                                    "buckets": [{"key": k, "doc_count": c} for k, c in ranked]}}}


def mget(index: str, docs: dict[str, dict[str, Any]], body: dict[str, Any], query: str) -> dict[str, Any]:
    includes = (parse_qs(query).get("_source_includes") or [""])[0]
    out = []
    for doc_id in body["ids"]:
        if doc_id not in docs:
            out.append({"_index": index, "_id": doc_id, "found": False})
            continue
        source = docs[doc_id]
        if includes:
            source = _included(source, includes.split(","))
        out.append({"_index": index, "_id": doc_id, "_version": 1, "found": True, "_source": source})
    return {"docs": out}


def _included(source: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """`_source_includes` for paths of one or two levels (a list of objects at the first)."""
    out: dict[str, Any] = {}
    for path in paths:
        head, _, leaf = path.partition(".")
        if head not in source:
            continue
        value = source[head]
        if leaf and isinstance(value, list):
            out[head] = [{leaf: v[leaf]} for v in value if isinstance(v, dict) and leaf in v]
        elif leaf and isinstance(value, dict):
            out[head] = {leaf: value[leaf]} if leaf in value else {}
        else:
            out[head] = value
    return out
