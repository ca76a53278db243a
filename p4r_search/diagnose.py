"""Why a recommendation came back empty. Runs only then, and is cheap: a few counts and filter values, no vectors.

It asks the backend three optional things (both backends have them; another backend without them gets no
diagnosis): `count_items(filters, candidate_ids, exclude_ids)`, how many items pass; `filter_values(field,
like=None)`, a field's values (with `like`, those equal to it ignoring case; None where not known).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

SHOWN_VALUES = 10


class Diagnosable(Protocol):
    def count_items(self, filters: Mapping[str, Sequence[str]], candidate_ids: Sequence[str] | None = None,
                    exclude_ids: Iterable[str] = ()) -> int: ...

    def filter_values(self, field: str, like: str | None = None) -> list[str] | None: ...


def why_empty(backend, *, filters: Mapping[str, Sequence[str]], candidate_ids: Sequence[str] | None = None,
              exclude_ids: Iterable[str] = ()) -> list[str]:
    """One sentence per reason, most basic first: an empty index, a filter no item passes (with the value
    meant, when only its case differs), candidates the index lacks, filters that exclude each other, or
    every match already seen."""
    if not hasattr(backend, "count_items"):
        return []
    count = backend.count_items
    if count({}) == 0:
        return ["the index holds no items"]
    notes = [unmatched(backend, name, values) for name, values in filters.items() if count({name: values}) == 0]
    if notes:
        return notes
    if candidate_ids is not None and count({}, candidate_ids) == 0:
        return ["none of the candidates is in the index"]
    matching = count(filters, candidate_ids)
    if matching == 0:
        among = " among the candidates" if candidate_ids is not None else ""
        return [f"no item{among} passes all the filters together (values of one field are OR-ed, fields AND-ed)"]
    exclude = frozenset(exclude_ids)
    if exclude and count(filters, candidate_ids, exclude) == 0:
        what = ("candidates" if candidate_ids is not None else "items") + (" that pass the filters" if filters else "")
        return [(f"all {matching} {what} are in the user's history, and seen items are not recommended "
                 "(--include-seen allows them)")]
    return []


def unmatched(backend, name: str, values: Sequence[str]) -> str:
    """Why no item has any of these values of one filter field."""
    shown = " or ".join(f"{name}={v}" for v in values)
    if name == "item_id":
        return f"no item has {shown}: no such item in the index"
    lister = getattr(backend, "filter_values", None)
    if lister is None:
        return f"no item has {shown}"
    similar = list(dict.fromkeys(s for v in values for s in (lister(name, like=v) or []) if s not in values))
    if similar:
        return f"no item has {shown}; did you mean {' or '.join(similar)}? (filter values are case-sensitive)"
    known = lister(name)
    if known:
        more = ", …" if len(known) > SHOWN_VALUES else ""
        return f"no item has {shown}; its values include {', '.join(known[:SHOWN_VALUES])}{more}"
    if known is None:
        return f"no item has {shown}"
    no_categories = name == "categories" or not lister("categories")
    hint = (" (an index built without --items has no categories or attributes: rebuild it with --items)"
            if no_categories else "")
    return f"no item has {shown}: no item in the index has any {name}{hint}"
