"""Shared pieces of the LLM generator tests: example items, a persona-writing responder for the FakeOpenAI
stand-in, and a helper that builds a generator wired to a stand-in server."""

from __future__ import annotations

import json
import re
from pathlib import Path

from p4r_search.catalog import load_catalog
from p4r_search.io import LineReader
from p4r_search.personas.llm import CostLedger, LLMGenerator, LLMSettings, PriceTable, ResponseCache

ROOT = Path(__file__).resolve().parents[1]
MODEL = "stand-in-model"


def small_examples(tmp_path: Path, n_items: int = 3, max_reviews: int = 6) -> dict[str, Path]:
    """The first `n_items` example items with at most `max_reviews` reviews each, as JSONL files."""
    items = [json.loads(line) for line in (ROOT / "examples/items.jsonl").read_text().splitlines()[:n_items]]
    ids = {i["item_id"] for i in items}
    kept: dict[str, list] = {i: [] for i in ids}
    for line in (ROOT / "examples/reviews.jsonl").read_text().splitlines():
        review = json.loads(line)
        if review["item_id"] in ids and len(kept[review["item_id"]]) < max_reviews:
            kept[review["item_id"]].append(review)
    paths = {"items": tmp_path / "items.jsonl", "reviews": tmp_path / "reviews.jsonl"}
    paths["items"].write_text("".join(json.dumps(i) + "\n" for i in items))
    paths["reviews"].write_text("".join(json.dumps(r) + "\n" for rs in kept.values() for r in rs))
    return paths


def load(paths: dict[str, Path]):
    return load_catalog(paths["items"], paths["reviews"], LineReader())


def personas_answer(ids: list[str], names=("Careful Shoppers", "Sharp Critics"), evidence=None) -> str:
    """A valid answer: one persona per name, citing the given ids (default: alternate prompt ids)."""
    personas = []
    for n, name in enumerate(names):
        cited = evidence[n] if evidence else ids[n :: len(names)] or ids[:1]
        personas.append({"name": name, "description": f"{name} who compare this piece with others they own.",
                         "rationale": f"{name} mention fit, fabric and price in their reviews.",
                         "evidence_review_ids": cited})
    return json.dumps({"personas": personas})


def persona_responder(request: dict) -> str:
    """Writes two distinct personas citing the prompt's own ids: what a well-behaved model would do."""
    first_user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    ids = re.findall(r"^\[(R\d+)\]", first_user, flags=re.MULTILINE)
    if len(ids) == 1:
        return personas_answer(ids, names=("Lone Reviewer",))
    return personas_answer(ids)


def make_generator(fake, encoder, tmp_path: Path, *, prices: dict | None = None, cache: bool = True, **settings):
    values = {"model": MODEL, "base_url": fake.base_url, "backoff_initial_s": 0.0, "max_attempts": 3, **settings}
    table = PriceTable.model_validate({"models": prices or {"*": {"input": 1.0, "output": 2.0}}})
    return LLMGenerator(LLMSettings(**values), encoder, ledger=CostLedger(table),
                        cache=ResponseCache(tmp_path / "cache" if cache else None))
