"""The extractive-aspects persona generator (review sentences clustered into aspects) on real reviews, with the
real packaged all-MiniLM-L6-v2 (no mocks). Digital Music reviews are read in place (tests/eval_data.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click import Choice
from conftest import read_jsonl, run_cli, write_jsonl
from eval_data import digital_music_slice, needs_digital_music

from p4r_search.models import Item, ItemPersonas, Persona, Review
from p4r_search.personas import GENERATORS, make_generator
from p4r_search.personas.aspects import ALGORITHM_VERSION, AspectGenerator
from p4r_search.personas.extractive import ExtractiveGenerator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def music_item(tmp_path_factory) -> tuple[Item, list[Review]]:
    """The first Digital Music item (by id) with 5 or more reviews, cut to its first 5 (by review id)."""
    folder = digital_music_slice(tmp_path_factory.mktemp("music"), items=3)
    items = [Item.model_validate(i) for i in read_jsonl(folder / "items.jsonl")]
    reviews = [Review.model_validate(r) for r in read_jsonl(folder / "reviews.jsonl")]
    for item in sorted(items, key=lambda i: i.item_id):
        own = sorted((r for r in reviews if r.item_id == item.item_id), key=lambda r: r.review_id)
        if len(own) >= 5:
            return item, own[:5]
    pytest.fail("the Digital Music slice should have an item with 5 reviews")


@pytest.fixture(scope="module")
def generator(encoder) -> AspectGenerator:
    return AspectGenerator(encoder, seed=0)


@pytest.fixture(scope="module")
def music_personas(generator, music_item) -> list[Persona]:
    return generator.generate(*music_item).personas


def normalised(text: str) -> str:
    return " ".join(text.split())


def assert_valid(personas: list[Persona], item: Item, reviews: list[Review], info) -> None:
    by_id = {r.review_id: r for r in reviews}
    for index, persona in enumerate(personas):
        Persona.model_validate(persona.model_dump())
        assert 2 <= len(persona.name.split()) <= 3 and persona.name == persona.name.title()
        assert persona.persona_id == f"{item.item_id}-p{index}"
        assert persona.description.strip() and len(persona.description) <= 400
        assert set(persona.evidence_review_ids) <= set(by_id), "evidence must be reviews of the item"
        assert len(set(persona.evidence_review_ids)) == len(persona.evidence_review_ids)
        assert persona.support == pytest.approx(len(persona.evidence_review_ids) / len(reviews))
        assert persona.rationale.startswith(f"{len(persona.evidence_review_ids)} of {len(reviews)} reviews")
        assert 1 <= len(persona.evidence_snippets) <= 3
        for quote in persona.evidence_snippets:
            assert quote.review_id in persona.evidence_review_ids
            assert normalised(quote.text).removesuffix("…") in normalised(by_id[quote.review_id].text)
    assert len({p.name for p in personas}) == len(personas), "names must be distinct within an item"
    assert [p.support for p in personas] == sorted((p.support for p in personas), reverse=True)
    ItemPersonas(item_id=item.item_id, personas=personas, generator=info, input_hash="sha256:0")  # 1 to 7


@needs_digital_music
def test_five_real_reviews_give_several_valid_personas(generator, music_item, music_personas):
    item, reviews = music_item
    assert 2 <= len(music_personas) <= 7
    assert_valid(music_personas, item, reviews, generator.info)
    # each persona cites a review holding one of its snippet sentences: its first evidence review holds the most
    for persona in music_personas:
        assert persona.evidence_snippets[0].review_id in persona.evidence_review_ids


@needs_digital_music
def test_personas_are_distinct_aspects(generator, music_item):
    item, reviews = music_item
    _, sentences, aspects = generator.aspects(item, reviews)
    assert len(aspects) >= 2
    for aspect in aspects:
        assert len(aspect.sentences) >= 3 and len({int(sentences.review[j]) for j in aspect.sentences}) >= 2
    every = sorted(j for a in aspects for j in a.sentences)
    assert every == list(range(len(sentences.texts))), "each sentence is in exactly one aspect"
    assert len(sentences.texts) <= 5 * 12 and all(len(t.split()) >= 4 for t in sentences.texts)


@needs_digital_music
def test_same_seed_same_output_whatever_the_input_order(generator, music_item, music_personas):
    item, reviews = music_item
    shuffled = list(reviews)
    random.Random(7).shuffle(shuffled)
    again = AspectGenerator(generator.encoder, seed=0).generate(item, shuffled)
    assert [p.model_dump() for p in again.personas] == [p.model_dump() for p in music_personas]
    assert again.used_review_ids == sorted(r.review_id for r in reviews)


def test_info_is_its_own(encoder):
    info = AspectGenerator(encoder, seed=3, max_personas=5).info
    assert (info.name, info.version, info.model) == ("extractive-aspects", ALGORITHM_VERSION, encoder.model_name)
    assert info.prompt_version == "extractive-aspects-v1" and info.params["seed"] == 3
    assert info.params["max_personas"] == 5
    assert info != ExtractiveGenerator(encoder, seed=3).info
    assert isinstance(make_generator("extractive-aspects", encoder), AspectGenerator)
    assert "extractive-aspects" in GENERATORS


def test_bad_settings_and_no_reviews_are_errors(encoder):
    for bad in ({"max_personas": 0}, {"max_personas": 8}, {"min_words": 0}, {"min_share": -1}):
        with pytest.raises(ValueError):
            AspectGenerator(encoder, **bad)
    with pytest.raises(ValueError, match="no reviews"):
        AspectGenerator(encoder).generate(Item(item_id="x", title="X"), [])


def test_one_review_and_short_reviews(generator):
    item = Item(item_id="one", title="A Record", categories=["Music"])
    long = Review(review_id="r1", item_id="one", rating=5, text=(
        "The vocals are warm and clear on every track. The singer's voice carries the ballads beautifully. "
        "Her phrasing on the slow songs is gorgeous. The production is crisp and the mix is balanced. "
        "The bass sounds full without drowning the drums. The mastering is loud but never harsh. "
        "Shipping was quick and the case arrived intact. The booklet has all the lyrics printed clearly."))
    made = generator.generate(item, [long])
    assert 1 <= len(made.personas) <= 2
    assert_valid(made.personas, item, [long], generator.info)
    assert all(p.evidence_review_ids == ["r1"] and p.support == 1.0 for p in made.personas)
    short = [Review(review_id=f"s{n}", item_id="one", rating=4, text=text)
             for n, text in enumerate(["Great album!", "Love it.", "Five stars"])]
    made = generator.generate(item, short)  # no sentence of 4 words: each whole review is one
    assert len(made.personas) == 1 and made.used_review_ids == ["s0", "s1", "s2"]
    assert_valid(made.personas, item, short, generator.info)


def test_cli_generates_with_extractive_aspects(tmp_path):
    items = read_jsonl(EXAMPLES / "items.jsonl")[:2]
    ids = {i["item_id"] for i in items}
    reviews = [r for r in read_jsonl(EXAMPLES / "reviews.jsonl") if r["item_id"] in ids]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "reviews.jsonl", reviews)
    out = tmp_path / "personas.jsonl"
    run_cli("personas", "generate", "--generator", "extractive-aspects", "--items", tmp_path / "items.jsonl",
            "--reviews", tmp_path / "reviews.jsonl", "-o", out, "--no-progress")
    lines = [ItemPersonas.model_validate(line) for line in read_jsonl(out)]
    assert {line.item_id for line in lines} == ids
    assert all(line.generator.name == "extractive-aspects" for line in lines)


def test_every_generator_choice_lists_it():
    from p4r_search.cli import cli

    def commands(group, path=()):
        for name, command in getattr(group, "commands", {}).items():
            yield path + (name,), command
            yield from commands(command, path + (name,))

    listing = {path: p for path, c in commands(cli) for p in c.params if p.name == "generator"}
    for path in [("personas", "generate"), ("eval", "loo")]:
        assert path in listing, f"p4r {' '.join(path)} has a --generator option"
    for param in listing.values():
        assert isinstance(param.type, Choice) and "extractive-aspects" in param.type.choices
