"""Which items and reviews a conversion keeps (`--top-items`, `--min-reviews`, `--max-reviews-per-item`).

The clothing converter applies a `Selection` to rows in memory; the streaming converters (Amazon, Goodreads)
apply it to the reviews file they wrote, with `select_items` and `cut_reviews`, before items are written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class Selection:
    """Which items and reviews to keep: the `top_items` most reviewed (all when None) among those with at
    least `min_reviews` reviews with text, and at most `max_reviews_per_item` of each (first by row)."""

    top_items: int | None = None
    min_reviews: int = 1
    max_reviews_per_item: int | None = None

    def __post_init__(self) -> None:
        for name in ("top_items", "max_reviews_per_item", "min_reviews"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")

    @property
    def active(self) -> bool:
        return self != Selection()


def select_items(item_ids: Iterable[str], review_counts: Mapping[str, int], selection: Selection) -> list[str]:
    """The items kept, in their given order: the `top_items` with the most reviews (ties: the earlier first)
    among those with at least `min_reviews`."""
    ordered = [i for i in item_ids if review_counts.get(i, 0) >= selection.min_reviews]
    top = set(sorted(ordered, key=lambda i: -review_counts[i])[: selection.top_items])  # sorted() is stable
    return [i for i in ordered if i in top]


def cut_reviews(path: Path, items: set[str], max_per_item: int | None) -> tuple[int, set[tuple[str, str]]]:
    """Rewrite a reviews JSONL file keeping the reviews of `items`, at most `max_per_item` of each (the first in
    the file). Returns the number kept and the (user, item) pairs of the reviews of kept items cut by the cap."""
    kept_file = path.with_name(path.name + ".kept")
    counts: dict[str, int] = {}
    cut: set[tuple[str, str]] = set()
    with open(path, encoding="utf-8") as src, open(kept_file, "w", encoding="utf-8") as dst:
        for line in src:
            review = json.loads(line)
            item_id = review["item_id"]
            if item_id not in items:
                continue
            if max_per_item is not None and counts.get(item_id, 0) >= max_per_item:
                cut.add((review.get("user_id"), item_id))
                continue
            counts[item_id] = counts.get(item_id, 0) + 1
            dst.write(line)
    os.replace(kept_file, path)
    return sum(counts.values()), cut
