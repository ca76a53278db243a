"""The leave-one-out split, and no leakage: no held-out review (nor a copy of it) ever feeds personas."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from eval_data import amazon_slice, needs_amazon

from p4r_search.evaluation.data import load_eval_data
from p4r_search.evaluation.embedding_cache import CachedEncoder
from p4r_search.evaluation.split import leave_one_out, training_reviews
from p4r_search.evaluation.vectors import build_personas, training_catalog
from p4r_search.io import LineReader
from p4r_search.models import Interaction, Review


def at(day: int) -> datetime:
    return datetime(2020, 1, day, tzinfo=timezone.utc)


def interaction(user: str, item: str, day: int, rating: float | None = 5.0) -> Interaction:
    return Interaction(user_id=user, item_id=item, timestamp=at(day), rating=rating)


def review(user: str, item: str, text: str, review_id: str | None = None) -> Review:
    return Review(review_id=review_id or f"{user}:{item}", item_id=item, user_id=user, text=text, rating=5)


def test_last_positive_is_test_and_the_one_before_validation():
    by_user = {"u": [interaction("u", "a", 1), interaction("u", "b", 2), interaction("u", "c", 3),
                     interaction("u", "low", 4, rating=2.0), interaction("u", "d", 5), interaction("u", "late", 6, 1.0)]}
    split = leave_one_out(by_user)
    (val,), (test,) = split.validation, split.test
    assert (val.history, val.target) == (("a", "b"), "c")
    assert (test.history, test.target) == (("a", "b", "c", "low"), "d")  # the validation item is test history
    assert split.held_out == {("u", "c"), ("u", "low"), ("u", "d"), ("u", "late")}


def test_equal_timestamps_are_ordered_by_item_id_and_repeats_keep_the_last():
    by_user = {"u": [interaction("u", "z", 1), interaction("u", "y", 2), interaction("u", "x", 2),
                     interaction("u", "z", 3), interaction("u", "w", 3)]}
    split = leave_one_out(by_user)
    # order: x@2, y@2, w@3, z@3 (z@1 is superseded by z@3)
    assert split.validation[0].history == ("x", "y") and split.validation[0].target == "w"
    assert split.test[0].target == "z"
    reversed_input = {"u": list(reversed(by_user["u"]))}
    assert leave_one_out(reversed_input) == split


def test_users_without_enough_interactions_are_skipped_and_counted():
    by_user = {"one": [interaction("one", "a", 1)],
               "low": [interaction("low", "a", 1), interaction("low", "b", 2, 1.0), interaction("low", "c", 3)],
               "two": [interaction("two", "a", 1), interaction("two", "b", 2)],
               "ok": [interaction("ok", "a", 1), interaction("ok", "b", 2), interaction("ok", "c", 3, None)]}
    split = leave_one_out(by_user)
    assert [c.user_id for c in split.test] == ["ok"]  # an unrated interaction counts as positive
    # "low": a and c are its positives, and nothing comes before a
    assert split.skipped == {"fewer than 2 positive interactions": 1, "no interaction before the validation item": 2}


def test_held_out_reviews_and_their_copies_on_sibling_items_are_excluded():
    held_out = frozenset({("u", "t")})
    reviews = [review("u", "t", "same words"), review("u", "sibling", "same words"), review("u", "h", "other"),
               review("v", "t", "same words"), Review(review_id="anon", item_id="t", text="same words")]
    kept = {r.review_id for r in training_reviews(reviews, held_out)}
    # another user's identical text, and an anonymous review, are not the held-out review
    assert kept == {"u:h", "v:t", "anon"}


@needs_amazon
def test_no_held_out_review_reaches_the_personas(tmp_path, encoder):
    """Real All_Beauty slice, real extractive generator: held-out reviews are absent from the persona input,
    from every persona's evidence and from the reviews each item's personas were generated from."""
    data = load_eval_data(amazon_slice(tmp_path, every_nth_user=12), LineReader())
    split = leave_one_out(data.interactions)
    held = [r for r in data.reviews if (r.user_id, r.item_id) in split.held_out]
    held_ids = {r.review_id for r in held}
    held_texts = {(r.user_id, r.text) for r in held}
    assert held and len(split.test) > 20

    catalog = training_catalog(data.items, training_reviews(data.reviews, split.held_out))
    persona_input = [r for reviews in catalog.reviews.values() for r in reviews]
    assert persona_input, "the slice must leave some reviews to build personas from"
    assert not held_ids & {r.review_id for r in persona_input}
    assert not held_texts & {(r.user_id, r.text) for r in persona_input}

    cache = CachedEncoder(encoder, tmp_path / "vectors.sqlite")
    cache.encode(sorted({r.text for r in persona_input}))
    records = build_personas(catalog, "extractive", cache, tmp_path / "personas.jsonl", seed=0)
    assert set(records) == set(catalog.items)
    used = {rid for record in records.values() for rid in record.used_review_ids}
    evidence = {rid for record in records.values() for p in record.personas for rid in p.evidence_review_ids}
    assert used == {r.review_id for r in persona_input}
    assert evidence <= used
    assert not held_ids & (used | evidence)


@pytest.mark.parametrize("rating", [2.9, 0.0])
def test_low_ratings_are_never_targets(rating):
    by_user = {"u": [interaction("u", "a", 1), interaction("u", "b", 2), interaction("u", "c", 3),
                     interaction("u", "d", 4, rating)]}
    split = leave_one_out(by_user)
    assert (split.validation[0].target, split.test[0].target) == ("b", "c")
