"""`p4r data convert-*`: the real exports, read in place, and hand-written edge cases.

The real files (research use only) are read from ../shared/data and never copied; their tests skip when
the folder is absent. Edge cases are small fixtures written to tmp_path by each test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, read_jsonl, run_cli, write_jsonl

from p4r_search.catalog import load_catalog, load_interactions
from p4r_search.data import convert_amazon, convert_goodreads
from p4r_search.errors import InputError
from p4r_search.io import LineReader, Rejects

SHARED = ROOT.parent / "shared" / "data"
AMAZON = SHARED / "amazon-all-beauty" / "All_Beauty_5.json.gz"
GOODREADS = sorted((SHARED / "goodreads-fantasy-ya").glob("*.json.gz"))
CLOTHING = SHARED / "womens-clothing-reviews" / "reviews.parquet"


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data not present: {path}")


def amazon_line(user="U1", asin="A1", **fields) -> dict:
    return {"reviewerID": user, "asin": asin, "overall": 5.0, "unixReviewTime": 1472688000,
            "reviewText": "Works well.", "summary": "Good", **fields}


def load_all(out: Path):
    """The converted folder through the package's own strict loaders (no skipping)."""
    catalog = load_catalog(out / "items.jsonl", out / "reviews.jsonl", LineReader())
    interactions = load_interactions(out / "interactions.jsonl", LineReader(), known_items=catalog.items)
    return catalog, interactions


# --- real exports -----------------------------------------------------------------------------------


@needs(AMAZON)
def test_real_amazon_file_converts_with_its_duplicates_counted(tmp_path):
    result = run_cli("data", "convert-amazon", AMAZON, "-o", tmp_path, "--json")
    report = json.loads(result.output)
    # the README: 5,269 lines, 85 items, 1,177 lines repeat a (user, item) pair
    assert (report["lines"], report["items"], report["duplicates"]) == (5269, 85, 1177)
    assert report["interactions"] == 5269 - 1177 == report["reviews"] + report["empty_texts"]
    catalog, interactions = load_all(tmp_path)
    assert len(catalog.items) == 85 and len({u for u in interactions}) == 991
    assert all(r.timestamp is not None and r.user_id for reviews in catalog.reviews.values() for r in reviews)


@pytest.mark.skipif(len(GOODREADS) != 2, reason=f"shared data not present: {SHARED / 'goodreads-fantasy-ya'}")
def test_real_goodreads_files_merge_and_drop_zero_ratings(tmp_path):
    report = json.loads(run_cli("data", "convert-goodreads", *GOODREADS, "-o", tmp_path, "--json").output)
    # the README: 20,000 lines, 16,862 distinct (user, book) reviews, 928 users
    assert report["lines"] == 20000 and report["duplicates"] == 20000 - 16862
    assert report["interactions"] + report["interactions_dropped"] == 16862
    assert report["unrated"] > 0
    _, interactions = load_all(tmp_path)
    assert len(interactions) == 928
    assert all(i.rating is None or i.rating >= 1 for history in interactions.values() for i in history)


@needs(CLOTHING)
def test_clothing_converter_reproduces_the_examples(tmp_path):
    run_cli("data", "convert-clothing", CLOTHING, "-o", tmp_path, "--top-items", "150", "--max-reviews-per-item", "40")
    for name in ("items.jsonl", "reviews.jsonl"):
        assert read_jsonl(tmp_path / name) == read_jsonl(EXAMPLES / name)
    assert not (tmp_path / "interactions.jsonl").exists()


@needs(AMAZON)
@pytest.mark.skipif(len(GOODREADS) != 2, reason="shared Goodreads data not present")
def test_converted_slices_feed_personas_and_index(tmp_path):
    """A few items of each converted dataset go through `personas generate` and `index build`."""
    amazon, goodreads = tmp_path / "amazon", tmp_path / "goodreads"
    convert_amazon(AMAZON, amazon)
    convert_goodreads(GOODREADS, goodreads)
    for folder in (amazon, goodreads):
        items, reviews = slice_of(folder, n_items=2, max_reviews=6)
        out = folder / "personas.jsonl"
        run_cli("personas", "generate", "--items", items, "--reviews", reviews, "-o", out, "--no-progress")
        run_cli("index", "build", "--personas", out, "--items", items, "--index", folder / "idx", "--no-progress")
        assert len(read_jsonl(out)) == 2


def slice_of(folder: Path, n_items: int, max_reviews: int) -> tuple[Path, Path]:
    items = read_jsonl(folder / "items.jsonl")[:n_items]
    ids = {i["item_id"] for i in items}
    kept: dict[str, list[dict]] = {item_id: [] for item_id in ids}
    for review in read_jsonl(folder / "reviews.jsonl"):
        if review["item_id"] in ids and len(kept[review["item_id"]]) < max_reviews:
            kept[review["item_id"]].append(review)
    return (write_jsonl(folder / "slice-items.jsonl", items),
            write_jsonl(folder / "slice-reviews.jsonl", [r for rs in kept.values() for r in rs]))


# --- Amazon edge cases ------------------------------------------------------------------------------


def test_amazon_messy_lines(tmp_path):
    source = tmp_path / "reviews.json.gz"  # gzip, as the real exports
    lines = [
        json.dumps(amazon_line(overall="4.0", unixReviewTime="1472688000")),  # numbers as strings
        json.dumps(amazon_line(reviewText="A later duplicate.")),  # same (user, item): the first line wins
        json.dumps(amazon_line("U2", reviewText=None, summary="Only a title", style={"Size:": " 7 oz"},
                               vote="12", image=["http://x/1.jpg"])),  # 2018 extras; no text
        json.dumps({k: v for k, v in amazon_line("U3").items() if k not in ("reviewText", "summary")}),  # no text
        json.dumps({k: v for k, v in amazon_line("U4").items() if k != "unixReviewTime"} | {"reviewTime": "09 1, 2016"}),
        str(amazon_line("U5", "A2")),  # the 2014 release's Python dict literal
        json.dumps(amazon_line("U6", "A3", reviewText="  ", summary="")),  # A3's only review is blank
    ]
    with gzip.open(source, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n\n")
    report = convert_amazon(source, tmp_path / "out")
    assert (report.lines, report.duplicates, report.empty_texts) == (7, 1, 2)
    assert (report.items, report.items_without_text, report.interactions_dropped) == (2, 1, 1)
    assert report.items_without_meta is None
    catalog, interactions = load_all(tmp_path / "out")
    first = catalog.reviews["A1"][0]
    assert (first.review_id, first.rating, first.text) == ("U1:A1", 4.0, "Good. Works well.")
    assert first.timestamp.isoformat() == "2016-09-01T00:00:00+00:00"
    assert {r.user_id: r.text for r in catalog.reviews["A1"]}["U2"] == "Only a title"
    assert "U3" in interactions and "U3" not in {r.user_id for r in catalog.reviews["A1"]}  # interaction only
    assert interactions["U4"][0].timestamp.isoformat() == "2016-09-01T00:00:00+00:00"
    assert catalog.items["A2"].title == "Item A2" and "A3" not in catalog.items and "U6" not in interactions


def test_amazon_meta_2014_and_2018(tmp_path):
    reviews = write_jsonl(tmp_path / "r.json", [amazon_line(asin=a) for a in ("A1", "A2", "A3")])
    meta = tmp_path / "meta.json"
    meta.write_text("\n".join([
        json.dumps({"asin": "A1", "title": " Rose Soap ", "category": ["Beauty", "Soap"], "brand": "Acme",
                    "description": ["Gentle.", "", "Smells of roses."], "price": "$4.99", "also_buy": ["A9"]}),
        str({"asin": "A2", "title": "Old Lotion", "categories": [["Beauty", "Skin"], ["Beauty", "Lotion"]],
             "description": "Thick.", "salesRank": {"Beauty": 12}}),
        json.dumps({"asin": "A1", "title": "A later duplicate"}),
        json.dumps({"asin": "Z9", "title": "Not reviewed"}),
    ]) + "\n")
    report = convert_amazon(reviews, tmp_path / "out", meta_path=meta)
    items = {i["item_id"]: i for i in read_jsonl(tmp_path / "out" / "items.jsonl")}
    assert items["A1"] == {"item_id": "A1", "title": "Rose Soap", "description": "Gentle. Smells of roses.",
                           "categories": ["Beauty", "Soap"], "attributes": {"brand": "Acme", "price": "$4.99"}}
    assert items["A2"]["categories"] == ["Beauty", "Skin", "Lotion"] and items["A2"]["description"] == "Thick."
    assert items["A3"]["title"] == "Item A3" and report.items_without_meta == 1 and "Z9" not in items


def test_amazon_bad_line_names_file_and_line_and_keeps_earlier_output(tmp_path):
    good = write_jsonl(tmp_path / "good.json", [amazon_line()])
    run_cli("data", "convert-amazon", good, "-o", tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(amazon_line()) + "\n" + json.dumps(amazon_line("U2", overall="five")) + "\n")
    result = run_cli("data", "convert-amazon", bad, "-o", tmp_path / "out", expect=65)
    assert f"{bad}:2: field 'overall': expected a number, got 'five'" in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # nothing lost or half-written

    with pytest.raises(InputError) as exc:
        convert_amazon(write_jsonl(tmp_path / "nouser.json", [{"asin": "A1"}]), tmp_path / "x")
    assert (exc.value.line, exc.value.reason) == (1, "missing required field 'reviewerID'")


def test_amazon_skip_invalid_writes_rejects_and_converts_the_rest(tmp_path):
    source = tmp_path / "r.json"
    source.write_text("\n".join([json.dumps(amazon_line()), "{not json", json.dumps(amazon_line("U2")),
                                 json.dumps(amazon_line("U3", unixReviewTime=None))]) + "\n")
    result = run_cli("data", "convert-amazon", source, "-o", tmp_path / "out", "--skip-invalid", "--json")
    report = json.loads(result.stdout)
    assert (report["rejected"], report["interactions"]) == (2, 2)
    rejects = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert (rejects[0]["line"], rejects[0]["raw"].strip()) == (2, "{not json")
    assert rejects[1]["line"] == 4 and "unixReviewTime" in rejects[1]["error"]


# --- Goodreads edge cases ---------------------------------------------------------------------------


def goodreads_line(user="u1", book="b1", review_id="r1", **fields) -> dict:
    return {"user_id": user, "book_id": book, "review_id": review_id, "rating": 4, "review_text": "Loved it.",
            "date_added": "Sun Jul 30 07:44:10 -0700 2017", "date_updated": "Wed Aug 30 00:00:26 -0700 2017",
            "n_votes": 1, **fields}


def test_goodreads_ratings_dates_duplicates_across_files(tmp_path):
    first = write_jsonl(tmp_path / "fantasy.json", [
        goodreads_line(rating=0),  # 0 is "not rated"
        goodreads_line("u2", review_id="r2", rating="5", review_text=""),  # string rating, no text
        goodreads_line("u3", "b2", "r3", date_added="", date_updated="Mon Jan 02 10:00:00 +0000 2017"),
    ])
    second = write_jsonl(tmp_path / "ya.json", [
        goodreads_line(review_text="The same pair again, from another genre file."),
        goodreads_line("u4", "b2", "r3"),  # the same review id under another pair
    ])
    report = convert_goodreads([first, second], tmp_path / "out", reader=LineReader())
    assert (report.lines, report.duplicates, report.empty_texts, report.unrated) == (5, 2, 1, 1)
    catalog, interactions = load_all(tmp_path / "out")
    assert interactions["u1"][0].rating is None and interactions["u2"][0].rating == 5.0
    assert interactions["u1"][0].timestamp.isoformat() == "2017-07-30T14:44:10+00:00"  # -0700 → UTC
    assert interactions["u3"][0].timestamp.isoformat() == "2017-01-02T10:00:00+00:00"
    assert catalog.items["b1"].title == "Book b1"
    assert [r.text for r in catalog.reviews["b1"]] == ["Loved it."]


def test_goodreads_skip_invalid_uses_the_rejects_file_given(tmp_path):
    source = write_jsonl(tmp_path / "g.json", [goodreads_line(), goodreads_line("u2", date_added="yesterday",
                                                                                 date_updated=None), [1, 2]])
    reader = LineReader(skip_invalid=True, rejects=Rejects(tmp_path / "bad.jsonl"))
    report = convert_goodreads([source], tmp_path / "out", reader=reader)
    reader.rejects.close()
    assert (report.interactions, report.rejected) == (1, 2)
    errors = [(r["line"], r["error"]) for r in read_jsonl(tmp_path / "bad.jsonl")]
    assert errors == [(2, "field 'date_added': cannot read the date 'yesterday'"), (3, "expected a JSON object, got list")]


def test_truncated_gzip_is_an_input_error(tmp_path):
    source = tmp_path / "cut.json.gz"
    with gzip.open(source, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(amazon_line(f"U{i}", reviewText=f"Review number {i} " * 20)) + "\n" for i in range(200))
    source.write_bytes(source.read_bytes()[:-300])
    with pytest.raises(InputError, match="unreadable compressed data") as exc:
        convert_amazon(source, tmp_path / "out")
    assert exc.value.path == str(source) and exc.value.line > 1
    assert not (tmp_path / "out" / "reviews.jsonl").exists()
