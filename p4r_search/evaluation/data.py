"""Loading an evaluation folder: items.jsonl, reviews.jsonl and interactions.jsonl (the package's formats)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..catalog import load_interactions, load_items
from ..errors import InputError
from ..io import LineReader
from ..models import Interaction, Item, Review

FILES = ("items.jsonl", "reviews.jsonl", "interactions.jsonl")


@dataclass(frozen=True)
class EvalData:
    items: dict[str, Item]
    reviews: list[Review]  # every review, held-out ones included: the split decides what feeds personas
    interactions: dict[str, list[Interaction]]  # by user


def load_reviews(path: Path, reader: LineReader, items: dict[str, Item]) -> list[Review]:
    reviews: list[Review] = []
    seen: dict[str, int] = {}
    for line_no, review, raw in reader.read(path, Review):
        if review.review_id in seen:
            reader.fail(InputError(str(path), line_no, f"duplicate review_id {review.review_id!r} "
                                                       f"(first on line {seen[review.review_id]})"), raw)
            continue
        if review.item_id not in items:
            reader.fail(InputError(str(path), line_no, f"review of unknown item {review.item_id!r}"), raw)
            continue
        seen[review.review_id] = line_no
        reviews.append(review)
    return reviews


def load_eval_data(folder: Path, reader: LineReader) -> EvalData:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(str(folder), None, f"missing {', '.join(missing)} (an eval folder holds {', '.join(FILES)})")
    items, _ = load_items(folder / "items.jsonl", reader)
    reviews = load_reviews(folder / "reviews.jsonl", reader, items)
    interactions = load_interactions(folder / "interactions.jsonl", reader, known_items=items)
    return EvalData(items, reviews, interactions)
