"""The part of a user's history that a profile uses: its recent end, looked up in bounded chunks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .backends.base import Backend

if TYPE_CHECKING:
    from .recommend import UserInput

MAX_EXAMINED = 10_000  # distinct history ids looked up at most, newest first, to fill last_n known items


@dataclass(frozen=True)
class RecentHistory:
    """The newest end of a history, looked up (`Recommender.recent_history`): `kept`, the last `last_n` entries
    the index has (oldest first) and their vectors in `found`; `skipped`, the looked-up ids it lacks (oldest
    first); `examined`, every distinct id looked up."""

    kept: tuple[str, ...] = ()
    found: Mapping[str, np.ndarray] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    examined: tuple[str, ...] = ()


def recent_history(backend: Backend, history: Sequence[str], last_n: int,
                   checkpoint: Callable[[str], None] = lambda stage: None) -> RecentHistory:
    """Look up the history from its newest end, in growing chunks, until `last_n` entries the index has are
    found, the history ends, or MAX_EXAMINED distinct ids were looked up: only those make the profile, so a
    long history costs no more than its recent end. `checkpoint` runs before each chunk (it may raise)."""
    budget = max(MAX_EXAMINED, last_n)
    found: dict[str, np.ndarray] = {}
    missing: set[str] = set()
    kept: list[str] = []  # newest first
    end, size = len(history), max(2 * last_n, 16)
    while end > 0 and len(kept) < last_n and len(found) + len(missing) < budget:
        checkpoint("history lookup")
        start = max(0, end - size)
        part = history[start:end]
        new = [i for i in dict.fromkeys(reversed(part)) if i not in found and i not in missing]
        new = new[: budget - len(found) - len(missing)]
        found.update(backend.persona_vectors(new))
        missing.update(i for i in new if i not in found)
        full = _keep_newest(part, found, missing, kept, last_n)
        end, size = start, size * 2
        if not full:
            break  # the budget ran out inside this chunk
    examined = tuple(i for i in dict.fromkeys(history[end:]) if i in found or i in missing)
    skipped = tuple(i for i in examined if i in missing)
    return RecentHistory(tuple(reversed(kept)), found, skipped, examined)


def _keep_newest(part: Sequence[str], found: Mapping[str, np.ndarray], missing: set[str], kept: list[str],
                 last_n: int) -> bool:
    """Add `part`'s entries the index has to `kept`, newest first, up to `last_n`; False when an entry was
    not looked up (the lookup budget ran out), so the walk stops there."""
    for item_id in reversed(part):
        if item_id in found:
            kept.append(item_id)
            if len(kept) == last_n:
                return True
        elif item_id not in missing:
            return False
    return True


def seen_ids(user: UserInput, recent: RecentHistory | None) -> frozenset[str]:
    """Every history item, the ones the index lacks left out where they were looked up: what a search
    excludes as seen (ids, not vectors: cheap for any history)."""
    seen = frozenset(user.history)
    return seen - frozenset(recent.skipped) if recent is not None and recent.skipped else seen
