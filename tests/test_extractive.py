"""The extractive persona generator on real reviews, with the real packaged all-MiniLM-L6-v2 (no mocks).

Reviews come from examples/ (real CC0 clothing reviews); a few items keep the run short.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from p4r_search.encoder import Encoder
from p4r_search.models import Item, Persona, Review
from p4r_search.personas.extractive import ALGORITHM_VERSION, ExtractiveGenerator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CRITICAL = 2.0


@pytest.fixture(scope="module")
def catalog() -> dict[str, tuple[Item, list[Review]]]:
    if not (EXAMPLES / "items.jsonl").exists() or not (EXAMPLES / "reviews.jsonl").exists():
        pytest.skip("examples/items.jsonl and examples/reviews.jsonl are needed (scripts/build_examples.py)")
    items = {}
    for line in (EXAMPLES / "items.jsonl").read_text(encoding="utf-8").splitlines():
        item = Item.model_validate_json(line)
        items[item.item_id] = (item, [])
    for line in (EXAMPLES / "reviews.jsonl").read_text(encoding="utf-8").splitlines():
        review = Review.model_validate_json(line)
        items[review.item_id][1].append(review)
    return items


def low_rated(reviews: Sequence[Review]) -> list[Review]:
    return [r for r in reviews if r.rating is not None and r.rating <= CRITICAL]


@pytest.fixture(scope="module")
def busy_item(catalog) -> tuple[Item, list[Review]]:
    """The item with the most reviews among those with at least 3 rated <= 2 (ties: first in the file)."""
    candidates = [entry for entry in catalog.values() if len(low_rated(entry[1])) >= 3]
    assert candidates, "the example data should have an item with 3 or more low-rated reviews"
    return max(candidates, key=lambda entry: len(entry[1]))


@pytest.fixture(scope="module")
def generator(encoder: Encoder) -> ExtractiveGenerator:
    return ExtractiveGenerator(encoder, seed=0)


@pytest.fixture(scope="module")
def busy_personas(generator, busy_item) -> list[Persona]:
    return generator.generate(*busy_item).personas


def assert_valid(personas: list[Persona], item: Item, reviews: Sequence[Review]) -> None:
    for index, persona in enumerate(personas):
        Persona.model_validate(persona.model_dump())
        assert 2 <= len(persona.name.split()) <= 3
        assert persona.name == persona.name.title()
        assert persona.persona_id == f"{item.item_id}-p{index}"
        assert persona.description.strip() and len(persona.description) <= 400
        assert persona.rationale.startswith(f"{len(persona.evidence_review_ids)} of {len(reviews)} reviews")
        assert persona.support == pytest.approx(len(persona.evidence_review_ids) / len(reviews))
        snippet_ids = [s.review_id for s in persona.evidence_snippets]
        assert 1 <= len(snippet_ids) <= 3 and snippet_ids == persona.evidence_review_ids[: len(snippet_ids)]
    assert len({p.name for p in personas}) == len(personas), "names must be distinct within an item"
    assert sum(p.support for p in personas) == pytest.approx(1.0)
    assert [p.support for p in personas] == sorted((p.support for p in personas), reverse=True)
    evidence = [rid for p in personas for rid in p.evidence_review_ids]
    assert len(evidence) == len(set(evidence)), "a review belongs to exactly one persona"
    assert set(evidence) == {r.review_id for r in reviews}


def test_info_records_every_setting(encoder):
    info = ExtractiveGenerator(encoder, seed=3, min_reviews=10, max_personas=5, critical_rating=1.0).info
    assert (info.name, info.version, info.model) == ("extractive", ALGORITHM_VERSION, encoder.model_name)
    assert info.prompt_version == "extractive-v1"
    assert info.params == {"seed": 3, "min_reviews": 10, "max_personas": 5, "critical_rating": 1.0}


def test_bad_settings_and_no_reviews_are_errors(encoder, busy_item):
    with pytest.raises(ValueError):
        ExtractiveGenerator(encoder, max_personas=8)
    with pytest.raises(ValueError):
        ExtractiveGenerator(encoder).generate(busy_item[0], [])


def test_below_min_reviews_gives_one_persona(generator, busy_item):
    item, reviews = busy_item
    few = reviews[:5]
    personas = generator.generate(item, few).personas
    assert len(personas) == 1
    assert_valid(personas, item, few)
    assert personas[0].support == 1.0


def test_many_reviews_give_2_to_7_valid_personas(busy_item, busy_personas):
    item, reviews = busy_item
    assert len(reviews) >= 20
    assert 2 <= len(busy_personas) <= 7
    assert_valid(busy_personas, item, reviews)


def test_low_rated_reviews_get_a_persona_of_their_own(busy_item, busy_personas):
    item, reviews = busy_item
    rating = {r.review_id: r.rating for r in reviews}
    low = {r.review_id for r in low_rated(reviews)}
    assert len(low) >= 3

    def low_share(persona: Persona) -> float:
        return sum(rid in low for rid in persona.evidence_review_ids) / len(persona.evidence_review_ids)

    critics = [p for p in busy_personas if low_share(p) > 0.5]
    assert critics, [(p.name, low_share(p)) for p in busy_personas]
    assert all(p.name.endswith("Critics") for p in critics)
    assert all(rating[rid] is not None for p in critics for rid in p.evidence_review_ids)


def test_critics_survive_a_small_max_personas(encoder, busy_item):
    item, reviews = busy_item
    low = {r.review_id for r in low_rated(reviews)}
    personas = ExtractiveGenerator(encoder, max_personas=2).generate(item, reviews).personas
    assert 1 <= len(personas) <= 2
    assert_valid(personas, item, reviews)
    assert any(sum(rid in low for rid in p.evidence_review_ids) > len(p.evidence_review_ids) / 2 for p in personas)


def test_unrated_reviews_are_never_critical(generator, busy_item):
    item, reviews = busy_item
    chosen = low_rated(reviews)[:3] + [r for r in reviews if r not in low_rated(reviews)][:9]
    unrated = [r.model_copy(update={"rating": None}) for r in chosen]
    personas = generator.generate(item, unrated).personas
    assert_valid(personas, item, unrated)
    assert not any(p.name.endswith(("Critics", "Skeptics")) for p in personas)
    assert all("average rating n/a" in p.rationale for p in personas)


def test_same_seed_same_output_whatever_the_input_order(generator, busy_item, busy_personas):
    item, reviews = busy_item
    shuffled = list(reviews)
    random.Random(7).shuffle(shuffled)
    again = generator.generate(item, shuffled).personas
    assert [p.model_dump() for p in again] == [p.model_dump() for p in busy_personas]
