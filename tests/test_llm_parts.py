"""The LLM generator's pure parts: review selection under a token budget, rate limits, prompts, price tables."""

from __future__ import annotations

import json

import pytest

from p4r_search.errors import ChoiceError, ConfigError, InputError
from p4r_search.models import Review
from p4r_search.personas.llm import CostLedger, PriceTable, RateLimiter
from p4r_search.personas.llm.prompts import SYNTHESIS, load_prompt
from p4r_search.personas.llm.schema import InvalidOutput, parse_personas
from p4r_search.personas.llm.selection import estimate_tokens, select_reviews


def review(n: int, rating: float, text: str) -> Review:
    return Review(review_id=f"r{n:03d}", item_id="i", rating=rating, text=text)


def test_everything_goes_in_when_it_fits():
    reviews = [review(n, 5, f"nice dress number {n}") for n in range(5)]
    chosen = select_reviews(reviews, budget_tokens=1000, max_review_chars=200)
    assert [c.local_id for c in chosen] == ["R1", "R2", "R3", "R4", "R5"]
    assert [c.review.review_id for c in chosen] == sorted(r.review_id for r in reviews)


def test_over_budget_the_subset_is_rating_balanced_and_diverse():
    happy = [review(n, 5, f"love the color and the soft fabric, wore it to work {n}") for n in range(60)]
    happy += [review(100 + n, 5, "the pockets are deep and the zipper is sturdy") for n in range(3)]
    critics = [review(200 + n, 1, f"it shrank after one wash and the seams split {n}") for n in range(3)]
    budget = 12 * (estimate_tokens(happy[0].text) + 4)
    chosen = select_reviews(happy + critics, budget_tokens=budget, max_review_chars=200)
    ratings = [c.review.rating for c in chosen]
    assert 10 <= len(chosen) <= 12
    assert ratings.count(1) == 3  # the 3 critics are not crowded out by 63 happy reviews
    assert any("pockets" in c.text for c in chosen)  # the unusual happy review makes it in
    assert sum(estimate_tokens(c.text) + 4 for c in chosen) <= budget
    assert chosen == select_reviews(list(reversed(happy + critics)), budget_tokens=budget, max_review_chars=200)


def test_long_reviews_are_clipped_at_a_word():
    (chosen,) = select_reviews([review(1, 4, "word " * 100)], budget_tokens=1000, max_review_chars=23)
    assert chosen.text == "word word word word…"


def test_rate_limiter_waits_for_the_request_and_token_windows():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rpm=2, tpm=1000, clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire(100) == 0 and limiter.acquire(100) == 0
    assert limiter.acquire(100) == pytest.approx(60.0)  # the third request in a minute waits for the first to age
    now[0] = 200.0
    limiter.acquire(900)
    assert limiter.acquire(500) == pytest.approx(60.0)  # 900 + 500 tokens do not fit one minute
    with pytest.raises(ConfigError):
        RateLimiter(rpm=0)


def test_prompts_are_versioned_files():
    prompt = load_prompt(SYNTHESIS, "v1")
    assert prompt.label == "persona_synthesis/v1"
    messages = prompt.messages(item="Title: X", reviews="[R1] fine", count_rule="2 to 7 personas")
    assert "[R1] fine" in messages[1]["content"] and "{reviews}" not in messages[1]["content"]
    assert '"evidence_review_ids": ["R1"]' in messages[1]["content"]  # literal JSON braces survive
    with pytest.raises(ChoiceError, match="v1"):
        load_prompt(SYNTHESIS, "v9")


def test_parse_personas_bounds():
    answer = {"personas": [{"name": "Tall Runners", "description": "People who run long distances.",
                            "rationale": "They like the cushioning a lot.", "evidence_review_ids": ["R1"]}]}
    with pytest.raises(InvalidOutput, match="expected 2 to 7 personas, got 1"):
        parse_personas(json.dumps(answer), ["R1", "R2"], (2, 7))
    answer["personas"][0]["name"] = "Runners"
    with pytest.raises(InvalidOutput, match="name"):
        parse_personas(json.dumps(answer), ["R1"], (1, 1))
    with pytest.raises(InvalidOutput, match="not valid JSON"):
        parse_personas("Sure! Here are the personas:", ["R1"], (1, 1))


def test_price_tables(tmp_path):
    ledger = CostLedger(PriceTable.load())
    ledger.record("personas", "gpt-4o-mini", 1_000_000, 100_000)
    ledger.record("personas", "gpt-4o-mini", 1_000_000, 0, batch=True)
    assert ledger.total_cost == pytest.approx(0.15 + 0.06 + 0.075)
    ledger.record("personas", "my-local-model", 10, 10)
    assert ledger.total_cost is None  # an unpriced model makes the total unknown, not zero
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"models": {"m": {"input": -1, "output": 0}}}))
    with pytest.raises(InputError, match="prices.json"):
        PriceTable.load(bad)
