"""The pipeline's checks without Ray: its pure functions (distributed/units.py) over the rows of real files say
what `load_catalog` says, for each kind of bad input. The Ray runs in test_pipeline_ray.py check the same
through the whole command for two of them."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from p4r_search.catalog import load_catalog
from p4r_search.distributed.coordination import busiest_window
from p4r_search.distributed.files import Location
from p4r_search.distributed.units import (
    ITEM,
    REJECT,
    REVIEW,
    AssemblyRules,
    as_error,
    assemble,
    duplicate_reviews,
    read_rows,
    reject,
)
from p4r_search.errors import InputError
from p4r_search.io import LineReader
from p4r_search.models import GeneratorInfo

INFO = GeneratorInfo(name="extractive", version="t", model="m", prompt_version="none").model_dump(mode="json")


def first_reject(items, reviews) -> InputError | None:
    """check.py's order of work, in plain Python: bad lines, duplicate review ids, then each item's rows."""
    rows = [row for number, (kind, path) in enumerate([(ITEM, items), (REVIEW, reviews)])
            for row in read_rows({"kind": kind, "number": number, "uri": str(path), "path": str(path), "shown": str(path)})]
    found = [reject(r, r["error"]) for r in rows if r["error"]]
    good = [r for r in rows if not r["error"]]
    by_review, by_item = defaultdict(list), defaultdict(list)
    for row in good:
        if row["kind"] == REVIEW:
            by_review[row["review_id"]].append(row)
        by_item[row["key"]].append(row)
    found += [d for group in by_review.values() for d in duplicate_reviews(group)]
    rules = AssemblyRules(INFO, str(items), dropped_reviews=frozenset((d["sort"][1], d["sort"][2]) for d in found))
    found += [json.loads(o["reject"]) for group in by_item.values() for o in assemble(group, rules) if o["status"] == REJECT]
    found.sort(key=lambda r: tuple(r["sort"]))
    return as_error(found[0]) if found else None


def write(path, records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


ITEMS = [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B"}]
REVIEWS = [{"review_id": "r1", "item_id": "a", "text": "good"}, {"review_id": "r2", "item_id": "b", "text": "fine"},
           {"review_id": "r3", "item_id": "a", "text": "ok"}]

CASES = {
    "malformed review line": (ITEMS, [*REVIEWS[:2], '{"review_id": "r3", oops'],),
    "missing field": (ITEMS, [*REVIEWS, {"review_id": "r4", "item_id": "a"}]),
    "duplicate item": ([*ITEMS, {"item_id": "a", "title": "again"}], REVIEWS),
    "duplicate review in another item": (ITEMS, [*REVIEWS, {"review_id": "r1", "item_id": "b", "text": "x"}]),
    "review of an unknown item": (ITEMS, [*REVIEWS, {"review_id": "r9", "item_id": "zzz", "text": "x"}]),
    "item without reviews": ([*ITEMS, {"item_id": "c", "title": "C"}], REVIEWS),
    "a bad item line before a bad review line": ([ITEMS[0], "[1, 2]", ITEMS[1]], [*REVIEWS, "nope"]),
}


@pytest.mark.parametrize("case", CASES)
def test_the_first_problem_is_the_one_load_catalog_reports(case, tmp_path):
    items, reviews = (write(tmp_path / f"{name}.jsonl", records) for name, records in zip(("items", "reviews"), CASES[case]))
    with pytest.raises(InputError) as single:
        load_catalog(items, reviews, LineReader())
    assert str(first_reject(items, reviews)) == str(single.value)


def test_good_input_makes_one_unit_per_item_with_its_reviews_in_file_order(tmp_path):
    items, reviews = write(tmp_path / "items.jsonl", ITEMS), write(tmp_path / "reviews.jsonl", REVIEWS)
    assert first_reject(items, reviews) is None
    rows = [r for n, (k, p) in enumerate([(ITEM, items), (REVIEW, reviews)])
            for r in read_rows({"kind": k, "number": n, "uri": str(p), "path": str(p), "shown": str(p)})]
    done = {"b": "sha256:whatever"}
    units = {o["item_id"]: o for key in ("a", "b")
             for o in assemble([r for r in rows if r["key"] == key], AssemblyRules(INFO, str(items), done=done))}
    assert [json.loads(r)["review_id"] for r in json.loads(units["a"]["reviews"])] == ["r1", "r3"]
    assert units["a"]["status"] == "todo" and units["b"]["status"] == "todo"  # b's hash differs: redone
    again = AssemblyRules(INFO, str(items), done={"a": units["a"]["input_hash"]})
    assert assemble([r for r in rows if r["key"] == "a"], again)[0]["status"] == "skipped"


def test_location_keeps_the_users_spelling_for_messages(tmp_path):
    location = Location.parse("relative/reviews.jsonl")
    assert location.shown == "relative/reviews.jsonl" and location.path.endswith("/relative/reviews.jsonl")


def test_busiest_window_counts_the_most_grants_in_any_minute():
    assert busiest_window([]) == 0
    assert busiest_window([0.0, 59.9, 60.0, 119.0, 119.5]) == 4  # 59.9 to 119.5
    assert busiest_window([0.0, 61.0, 122.0]) == 1


def test_parquet_rows_read_as_the_jsonl_lines_they_were_made_from(tmp_path):
    """A struct column holds every key of every row; a key a row did not have must not come back as null."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    items = [{"item_id": "a", "title": "A", "attributes": {"color": "red"}},
             {"item_id": "b", "title": "B", "categories": ["Tops"], "attributes": {"size": "M"}}]
    pq.write_table(pj.read_json(write(tmp_path / "items.jsonl", items)), tmp_path / "items.parquet")  # union schema
    source = {"kind": ITEM, "number": 0, "uri": str(tmp_path / "items.parquet"),
              "path": str(tmp_path / "items.parquet"), "shown": "items.parquet"}
    rows = list(read_rows(source))
    assert [json.loads(r["raw"]) for r in rows] == items and [r["line"] for r in rows] == [1, 2]
