"""The review hold-out of the retrieval task: some reviews of each item become queries for that item.

Per item, ⌊fraction · n⌋ (at least 1) of its n reviews are held out, chosen by a generator seeded with
(seed, item id), so an item's split does not depend on the other items or on file order. Items with fewer
than `min_reviews` reviews keep them all for training: they stay in the catalog as candidates (distractors)
but give no queries; they are counted. Pure: no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..catalog import Catalog
from ..errors import ConfigError
from ..models import Review


@dataclass(frozen=True)
class HoldoutSplit:
    train: Catalog  # every item, with its training reviews only
    queries: tuple[Review, ...]  # the held-out reviews; each is a query for its own item
    items_without_queries: tuple[str, ...]

    @property
    def held_out_ids(self) -> frozenset[str]:
        return frozenset(r.review_id for r in self.queries)


def holdout_split(catalog: Catalog, *, fraction: float = 0.2, min_reviews: int = 5, seed: int = 0) -> HoldoutSplit:
    if not 0 < fraction < 1:
        raise ConfigError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    if min_reviews < 2:
        raise ConfigError(f"min_reviews must be at least 2 (one to train, one to query), got {min_reviews}")
    train = Catalog()
    queries: list[Review] = []
    without: list[str] = []
    for item, reviews in catalog:
        ordered = sorted(reviews, key=lambda r: r.review_id)
        held = held_out_positions(len(ordered), fraction, min_reviews, random.Random(f"{seed}:{item.item_id}"))
        if not held:
            without.append(item.item_id)
        train.items[item.item_id] = item
        train.reviews[item.item_id] = [r for i, r in enumerate(ordered) if i not in held]
        queries.extend(r for i, r in enumerate(ordered) if i in held)
    return HoldoutSplit(train=train, queries=tuple(queries), items_without_queries=tuple(without))


def held_out_positions(n: int, fraction: float, min_reviews: int, rng: random.Random) -> set[int]:
    if n < min_reviews:
        return set()
    return set(rng.sample(range(n), max(1, int(n * fraction))))
