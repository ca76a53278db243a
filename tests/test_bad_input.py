"""Every bad-input case gives an error naming the file, the line and what is wrong; --skip-invalid
rejects the line into a rejects file and goes on."""

from __future__ import annotations

import json

import pytest

from p4r_search.catalog import load_catalog, load_interactions
from p4r_search.errors import InputError
from p4r_search.io import LineReader, Rejects

ITEMS = [
    {"item_id": "a", "title": "Dress A"},
    {"item_id": "b", "title": "Dress B"},
]
REVIEWS = [
    {"review_id": "r1", "item_id": "a", "rating": 5, "text": "Lovely fit for petite frames."},
    {"review_id": "r2", "item_id": "b", "rating": 2, "text": "Runs small, returned it."},
    {"review_id": "r3", "item_id": "b", "rating": 4, "text": "Comfortable fabric."},
]


def write(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines))
    return path


def load(tmp_path, items=ITEMS, reviews=REVIEWS, reader=None):
    return load_catalog(write(tmp_path / "items.jsonl", items), write(tmp_path / "reviews.jsonl", reviews), reader or LineReader())


CASES = {
    # case: (review lines, bad line number, expected message, review ids kept with --skip-invalid)
    "malformed JSON": (REVIEWS[:1] + [b'{"review_id": "r9", "item_id": "a",'] + REVIEWS[1:], 2, "malformed JSON", "r1 r2 r3"),
    "missing field": (REVIEWS[:2] + [{"review_id": "r3", "item_id": "b"}], 3, "missing required field 'text'", "r1 r2"),
    "blank text": (REVIEWS[:1] + [{**REVIEWS[1], "text": " \t "}] + REVIEWS[2:], 2, "empty or whitespace-only", "r1 r3"),
    "non-UTF-8": (REVIEWS[:2] + [b'{"review_id": "r3", "item_id": "b", "text": "caf\xe9"}'], 3, "invalid UTF-8", "r1 r2"),
    "unknown item": (REVIEWS + [{"review_id": "r4", "item_id": "zz", "text": "Who?"}], 4, "unknown item 'zz'", "r1 r2 r3"),
    "duplicate review id": (REVIEWS + [{**REVIEWS[0], "text": "again"}], 4, "duplicate review_id 'r1' (first on line 1)", "r1 r2 r3"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_review_line_names_file_line_and_problem(tmp_path, case):
    reviews, line, message, _ = CASES[case]
    with pytest.raises(InputError) as err:
        load(tmp_path, reviews=reviews)
    assert err.value.path.endswith("reviews.jsonl")
    assert err.value.line == line
    assert message in err.value.reason
    assert f"reviews.jsonl:{line}: " in str(err.value)


@pytest.mark.parametrize("case", CASES)
def test_skip_invalid_rejects_the_line_and_keeps_the_rest(tmp_path, case):
    reviews, line, message, kept_ids = CASES[case]
    rejects = Rejects(tmp_path / "rejects.jsonl")
    catalog = load(tmp_path, reviews=reviews, reader=LineReader(skip_invalid=True, rejects=rejects))
    rejects.close()
    kept = sorted(r.review_id for rs in catalog.reviews.values() for r in rs)
    assert kept == kept_ids.split()
    [reject] = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == line and message in reject["error"] and reject["file"].endswith("reviews.jsonl")
    assert reject["raw"]


def test_item_with_no_reviews_is_reported_at_its_items_line(tmp_path):
    items = ITEMS + [{"item_id": "c", "title": "Lonely"}]
    with pytest.raises(InputError) as err:
        load(tmp_path, items=items)
    assert err.value.path.endswith("items.jsonl") and err.value.line == 3
    assert "item 'c' has no reviews" in err.value.reason
    catalog = load(tmp_path, items=items, reader=LineReader(skip_invalid=True))
    assert sorted(catalog.items) == ["a", "b"]


def test_missing_item_field_and_unknown_field(tmp_path):
    with pytest.raises(InputError, match=r"items.jsonl:2: missing required field 'title'"):
        load(tmp_path, items=[ITEMS[0], {"item_id": "b"}])
    with pytest.raises(InputError, match=r"items.jsonl:1: unknown field 'titel'"):
        load(tmp_path, items=[{"item_id": "a", "title": "A", "titel": "typo"}, ITEMS[1]])


def test_interaction_with_unknown_item(tmp_path):
    path = write(
        tmp_path / "interactions.jsonl",
        [
            {"user_id": "u", "item_id": "a", "timestamp": "2026-01-02T00:00:00Z"},
            {"user_id": "u", "item_id": "nope", "timestamp": 1767225600},
        ],
    )
    with pytest.raises(InputError) as err:
        load_interactions(path, LineReader(), known_items={"a", "b"})
    assert err.value.line == 2 and "interaction with unknown item 'nope'" in err.value.reason
    by_user = load_interactions(path, LineReader(skip_invalid=True), known_items={"a", "b"})
    assert [i.item_id for i in by_user["u"]] == ["a"]


def test_interactions_are_sorted_oldest_first_across_timestamp_formats(tmp_path):
    path = write(
        tmp_path / "interactions.jsonl",
        [
            {"user_id": "u", "item_id": "b", "timestamp": "2026-01-03T00:00:00+02:00"},
            {"user_id": "u", "item_id": "a", "timestamp": 1767225600},  # 2026-01-01 UTC
        ],
    )
    assert [i.item_id for i in load_interactions(path, LineReader())["u"]] == ["a", "b"]


def test_a_json_value_that_is_not_an_object(tmp_path):
    with pytest.raises(InputError, match=r"reviews.jsonl:1: expected a JSON object, got list"):
        load(tmp_path, reviews=[[1, 2]] + REVIEWS)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_catalog(tmp_path / "nope.jsonl", tmp_path / "nope2.jsonl", LineReader())
