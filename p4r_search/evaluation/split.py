"""The leave-one-out split, per user, and the reviews that may feed personas.

Per user, interactions are ordered by (timestamp, item_id): equal timestamps (common in exports with day
resolution) are ordered by item id, so the split never depends on file order. A user who interacted with
the same item more than once keeps only the last interaction with it. Then:

- test is the user's last interaction rated >= `min_rating` (an interaction without a rating counts as
  positive), validation the last such interaction before it;
- the history of a case is every interaction before its target (so the validation item is history for the
  test case); a user with no interaction before the validation item is skipped and counted.

Held out are the user's interactions from the validation item on (the validation and test items, and any
low-rated ones in between or after): none of their reviews, nor copies of them on other items, may feed
personas or item representations. Users who are skipped keep all their reviews and interactions in training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..models import Interaction, Review

MIN_RATING = 3.0


@dataclass(frozen=True)
class LooCase:
    """One prediction: after `history` (item ids, oldest first), the user interacted with `target`."""

    user_id: str
    history: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class LooSplit:
    validation: list[LooCase]
    test: list[LooCase]
    held_out: frozenset[tuple[str, str]]  # (user_id, item_id) pairs whose reviews are off limits
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> users

    def case_sets(self) -> dict[str, list[LooCase]]:
        return {"validation": self.validation, "test": self.test}


def ordered_interactions(interactions: Iterable[Interaction]) -> list[Interaction]:
    """Oldest first, ties by item id; only the last interaction with each item is kept."""
    last: dict[str, Interaction] = {}
    for interaction in sorted(interactions, key=lambda i: (i.timestamp, i.item_id)):
        last.pop(interaction.item_id, None)  # re-insert, so the order is that of the last interaction
        last[interaction.item_id] = interaction
    return list(last.values())


def is_positive(interaction: Interaction, min_rating: float) -> bool:
    return interaction.rating is None or interaction.rating >= min_rating


def leave_one_out(by_user: Mapping[str, Sequence[Interaction]], min_rating: float = MIN_RATING) -> LooSplit:
    validation: list[LooCase] = []
    test: list[LooCase] = []
    held_out: set[tuple[str, str]] = set()
    skipped: Counter[str] = Counter()
    for user_id in sorted(by_user):
        ordered = ordered_interactions(by_user[user_id])
        positives = [p for p, i in enumerate(ordered) if is_positive(i, min_rating)]
        if len(positives) < 2:
            skipped["fewer than 2 positive interactions"] += 1
            continue
        val_at, test_at = positives[-2], positives[-1]
        if val_at == 0:
            skipped["no interaction before the validation item"] += 1
            continue
        items = [i.item_id for i in ordered]
        validation.append(LooCase(user_id, tuple(items[:val_at]), items[val_at]))
        test.append(LooCase(user_id, tuple(items[:test_at]), items[test_at]))
        held_out.update((user_id, item_id) for item_id in items[val_at:])
    return LooSplit(validation, test, frozenset(held_out), dict(skipped))


def training_reviews(reviews: Iterable[Review], held_out: frozenset[tuple[str, str]]) -> list[Review]:
    """The reviews that may feed personas: none by a user about an item held out for that user, and no copy
    of such a review: the same text by the same user on another item (Amazon lists one review under every
    variant of a product, so a held-out review would otherwise come back through a sibling item)."""
    reviews = list(reviews)
    held_texts = {(r.user_id, r.text) for r in reviews if (r.user_id, r.item_id) in held_out}
    return [r for r in reviews
            if r.user_id is None or ((r.user_id, r.item_id) not in held_out and (r.user_id, r.text) not in held_texts)]
