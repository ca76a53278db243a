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
    items_past_limit: int = 0  # items of the file left out by `limit`
    unknown_item_reviews: int = 0  # reviews of items not in the items file, ignored (`ignore_unknown_items`)

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


UNKNOWN_ITEM_HINT = ("to use only some of the items, keep only their reviews in the reviews file, or give "
                     "`p4r personas generate` the full items file with --limit N, or --ignore-unknown-items")


def load_catalog(
    items_path: str | os.PathLike[str], reviews_path: str | os.PathLike[str], reader: LineReader, *,
    limit: int | None = None, ignore_unknown_items: bool = False,
) -> Catalog:
    """Items with their reviews. `limit`: only the first `limit` items of the file (the reviews of the others are
    checked, not kept). `ignore_unknown_items`: a review of an item not in the items file is counted, not an error."""
    items, item_lines = load_items(items_path, reader)
    catalog = Catalog(items_past_limit=max(0, len(items) - limit) if limit is not None else 0)
    wanted = set(list(items)[:limit]) if limit is not None else items
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
        if review.item_id not in items and ignore_unknown_items:
            catalog.unknown_item_reviews += 1
            continue
        if review.item_id not in items:
            reason = f"review of unknown item {review.item_id!r} (not in {items_path})"
            reader.fail(InputError(str(reviews_path), line_no, reason, hint=UNKNOWN_ITEM_HINT), raw)
            continue
        seen[review.review_id] = line_no
        if review.item_id in wanted:
            reviews[review.item_id].append(review)

    for item_id, item in items.items():
        if item_id not in wanted:
            continue
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
