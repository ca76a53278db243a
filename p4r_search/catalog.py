"""Loading a catalog (items + reviews) and interactions, with the checks that span lines and files."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass, field

from .errors import InputError
from .io import LineReader
from .models import Interaction, Item, Review


@dataclass
class Catalog:
    items: dict[str, Item] = field(default_factory=dict)
    reviews: dict[str, list[Review]] = field(default_factory=dict)

    def __iter__(self):
        for item_id, item in self.items.items():
            yield item, self.reviews[item_id]


def load_items(path: str | os.PathLike[str], reader: LineReader) -> tuple[dict[str, Item], dict[str, int]]:
    """Items by id, and the line each came from."""
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    for line_no, item, raw in reader.read(path, Item):
        if item.item_id in items:
            reader.fail(
                InputError(str(path), line_no, f"duplicate item_id {item.item_id!r} (first on line {lines[item.item_id]})"),
                raw,
            )
            continue
        items[item.item_id] = item
        lines[item.item_id] = line_no
    return items, lines


def load_catalog(
    items_path: str | os.PathLike[str], reviews_path: str | os.PathLike[str], reader: LineReader
) -> Catalog:
    items, item_lines = load_items(items_path, reader)
    reviews: dict[str, list[Review]] = defaultdict(list)
    seen: dict[str, int] = {}
    for line_no, review, raw in reader.read(reviews_path, Review):
        if review.review_id in seen:
            reader.fail(
                InputError(
                    str(reviews_path), line_no, f"duplicate review_id {review.review_id!r} (first on line {seen[review.review_id]})"
                ),
                raw,
            )
            continue
        if review.item_id not in items:
            reader.fail(InputError(str(reviews_path), line_no, f"review of unknown item {review.item_id!r}"), raw)
            continue
        seen[review.review_id] = line_no
        reviews[review.item_id].append(review)

    catalog = Catalog()
    for item_id, item in items.items():
        if not reviews.get(item_id):
            reader.fail(InputError(str(items_path), item_lines[item_id], f"item {item_id!r} has no reviews"))
            continue
        catalog.items[item_id] = item
        catalog.reviews[item_id] = reviews[item_id]
    return catalog


def load_interactions(
    path: str | os.PathLike[str], reader: LineReader, known_items: Container[str] | None = None
) -> dict[str, list[Interaction]]:
    """Interactions by user, oldest first. Unknown items are errors when `known_items` is given."""
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for line_no, interaction, raw in reader.read(path, Interaction):
        if known_items is not None and interaction.item_id not in known_items:
            reader.fail(InputError(str(path), line_no, f"interaction with unknown item {interaction.item_id!r}"), raw)
            continue
        by_user[interaction.user_id].append(interaction)
    for history in by_user.values():
        history.sort(key=lambda i: i.timestamp)
    return dict(by_user)
