"""Input lines → one unit of work per item (the item, its reviews in file order, its input hash).

Plain functions over rows (dicts), so Ray runs them in its tasks and the tests call them directly. The
checks are those of `catalog.load_catalog`, with the same messages: a bad line, a duplicate item or review
id, a review of an unknown item, an item without reviews. A row that fails a check becomes a reject
(`InputError`'s fields), which the driver raises, or records with --skip-invalid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..catalog import UNKNOWN_ITEM_HINT
from ..errors import InputError
from ..io import parse_line
from ..models import GeneratorInfo, Item, Review
from ..personas.base import input_hash
from .files import Location, file_format, iter_lines

ITEM, REVIEW = "item", "review"
TODO, SKIPPED, REJECT, IGNORED = "todo", "skipped", "reject", "ignored"


@dataclass(frozen=True)
class InputFile:
    kind: str  # ITEM or REVIEW
    number: int  # position among all input files, items first: the order of "first on line N"
    location: Location


def read_rows(source: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows of one input file (`source`: kind, number, uri, path, shown). A line that does not parse
    becomes a row with `error` set and no key."""
    location = Location(source["uri"], source["path"], source["shown"])
    model = Item if source["kind"] == ITEM else Review
    fmt = file_format(location.path)
    lines = iter_lines(location) if fmt == "jsonl" else _parquet_rows(location)
    for number, raw in lines:
        row = {"kind": source["kind"], "file_no": source["number"], "file": location.shown, "line": number,
               "raw": raw.decode("utf-8", errors="replace"), "key": "", "review_id": "", "error": ""}
        try:
            record = parse_line(raw, model, location.shown, number)
        except InputError as exc:
            row["error"] = exc.reason
        else:
            row["key"] = record.item_id
            row["review_id"] = record.review_id if isinstance(record, Review) else ""
        yield row


def _parquet_rows(location: Location) -> Iterator[tuple[int, bytes]]:
    """Parquet rows as JSON lines; the 'line' of a row is its 1-based position in the file."""
    import pyarrow.parquet as pq

    with location.filesystem.open_input_file(location.path) as fh:
        number = 0
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, json.dumps(_without_nulls(row), ensure_ascii=False, default=str).encode("utf-8")


def _without_nulls(value):
    """A Parquet struct column has every key of every row: a key a row did not have reads as None."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def reject(row: dict[str, Any], reason: str, *, hint: str | None = None, raw: bool = True, order: int = 0) -> dict:
    """`order` sorts rejects as the single-machine loader meets them: lines in file order, then (1) items
    found to have no reviews once every review is read."""
    return {"file": row["file"], "line": row["line"], "reason": reason, "hint": hint,
            "raw": row["raw"] if raw else None, "sort": [order, row["file_no"], row["line"]]}


def as_error(record: dict[str, Any]) -> InputError:
    return InputError(record["file"], record["line"], record["reason"], hint=record.get("hint"))


def duplicate_reviews(rows: list[dict[str, Any]]) -> list[dict]:
    """The rows of one review id: every one after the first in file order is a duplicate."""
    rows = sorted(rows, key=lambda r: (r["file_no"], r["line"]))
    first = rows[0]
    return [reject(r, f"duplicate review_id {r['review_id']!r} (first on line {first['line']})") for r in rows[1:]]


@dataclass(frozen=True)
class AssemblyRules:
    info: dict  # GeneratorInfo as JSON
    items_shown: str  # --items as given, for "not in …"
    ignore_unknown_items: bool = False
    done: dict[str, str] | None = None  # item id → input hash already in the output
    dropped_reviews: frozenset[tuple[int, int]] = frozenset()  # (file_no, line) of duplicate review ids


def assemble(rows: list[dict[str, Any]], rules: AssemblyRules) -> list[dict[str, Any]]:
    """The rows of one item id → outcome rows: `todo` (with the unit), `skipped` (already done with the
    same input hash), `reject`, or `ignored` (reviews of an unknown item, with --ignore-unknown-items)."""
    rows = sorted(rows, key=lambda r: (r["file_no"], r["line"]))
    items = [r for r in rows if r["kind"] == ITEM]
    reviews = [r for r in rows if r["kind"] == REVIEW and (r["file_no"], r["line"]) not in rules.dropped_reviews]
    out = [_outcome(REJECT, r["key"], reject=reject(r, f"duplicate item_id {r['key']!r} (first on line {items[0]['line']})"))
           for r in items[1:]]
    if not items:
        if rules.ignore_unknown_items:
            return out + [_outcome(IGNORED, r["key"]) for r in reviews]
        reason = lambda r: f"review of unknown item {r['key']!r} (not in {rules.items_shown})"
        return out + [_outcome(REJECT, r["key"], reject=reject(r, reason(r), hint=UNKNOWN_ITEM_HINT)) for r in reviews]
    first = items[0]
    if not reviews:
        return out + [_outcome(REJECT, first["key"], reject=reject(first, f"item {first['key']!r} has no reviews",
                                                                     raw=False, order=1))]
    item = _parse(first["raw"], Item)
    parsed = [_parse(r["raw"], Review) for r in reviews]
    digest = input_hash(item, parsed, GeneratorInfo.model_validate(rules.info))
    status = SKIPPED if (rules.done or {}).get(item.item_id) == digest else TODO
    unit = {"item": first["raw"], "reviews": json.dumps([r["raw"] for r in reviews]), "input_hash": digest}
    return out + [_outcome(status, item.item_id, **unit)]


def _outcome(status: str, item_id: str, *, reject: dict | None = None, item: str = "", reviews: str = "[]",
             input_hash: str = "") -> dict[str, Any]:
    return {"status": status, "item_id": item_id, "item": item, "reviews": reviews, "input_hash": input_hash,
            "reject": json.dumps(reject) if reject else ""}


def _parse(raw: str, model):
    return model.model_validate(json.loads(raw))  # as parse_line did when the row was read


def unit_of(row: dict[str, Any]) -> tuple[Item, list[Review]]:
    return _parse(row["item"], Item), [_parse(r, Review) for r in json.loads(row["reviews"])]
