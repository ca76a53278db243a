"""User profiles: history → one unit vector.

Each interaction of the history becomes one vector, by the profile source:

- `items`: the item, as the normalised mean of its persona vectors (what the index holds), so a profile
  needs nothing but the index;
- `reviews`: what the user wrote about the item (the embedding of their review), as in Persona4Rec; an
  interaction without a review falls back to the item;
- `both`: the normalised sum of the item and the review (the item alone without a review).

The history profile is the recency-weighted mean of the last N interactions, weight gamma**age with age 0
for the most recent (Persona4Rec: N=10, gamma=0.65). A free-text profile is the embedding of the text (a
description of what they want). Both together are mixed as (1 - text_weight) * history + text_weight *
text, then normalised. The same functions build profiles for serving, evaluation and training, so the
three agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .errors import ChoiceError, ConfigError

# Whitespace and Unicode's control (Cc) and format (Cf) characters: NUL, zero-width spaces and joiners, BOM.
# A text of only these says nothing, so it counts as no text. The characters are literal (not regex escapes)
# so that the same pattern serves Python here and the JSON Schema of the service's requests.
INVISIBLE = ("\u0000-\u0020\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u1680"
             "\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb\U000110bd"
             "\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
VISIBLE_PATTERN = f"[^{INVISIBLE}]"
_VISIBLE = re.compile(VISIBLE_PATTERN)


def has_text(text: str | None) -> bool:
    """Whether a text says anything: one visible character at least (see INVISIBLE)."""
    return bool(text) and _VISIBLE.search(text) is not None


class ProfileSource(str, Enum):
    ITEMS = "items"
    REVIEWS = "reviews"
    BOTH = "both"


PROFILE_SOURCES = tuple(s.value for s in ProfileSource)


@dataclass(frozen=True)
class ProfileConfig:
    last_n: int = 10
    gamma: float = 0.65
    text_weight: float = 0.5
    source: ProfileSource = ProfileSource.ITEMS

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "source", ProfileSource(self.source))
        except ValueError:
            raise ChoiceError("profile source", self.source, PROFILE_SOURCES) from None
        if self.last_n < 1:
            raise ConfigError(f"last_n must be at least 1, got {self.last_n}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.text_weight <= 1:
            raise ConfigError(f"text_weight must be in [0, 1], got {self.text_weight}")


def normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0 or not np.isfinite(norm):
        raise ConfigError("cannot build a profile from a zero vector")
    return (vector / norm).astype(np.float32)


def item_vector(persona_vectors: np.ndarray) -> np.ndarray:
    """An item as one vector: the normalised mean of its persona vectors."""
    return normalise(np.asarray(persona_vectors, dtype=np.float32).mean(axis=0))


def interaction_vectors(items: np.ndarray, reviews: np.ndarray, has_review: np.ndarray,
                        source: ProfileSource | str) -> np.ndarray:
    """History interactions as unit rows: the item's vector, the user's review's, or both (see the module).
    `items` and `reviews` are (n, dim) unit rows; where `has_review` is False the item is used."""
    source = ProfileSource(source)
    items = unit_rows(items)
    if source is ProfileSource.ITEMS:
        return items
    reviews = unit_rows(reviews)
    mixed = reviews if source is ProfileSource.REVIEWS else unit_rows(items + reviews)
    return np.where(np.asarray(has_review, dtype=bool)[:, None], mixed, items).astype(np.float32)


def interaction_vector(item: np.ndarray, review: np.ndarray | None, source: ProfileSource | str) -> np.ndarray:
    """One history interaction as a unit vector (`interaction_vectors` for one row)."""
    reviews = np.zeros_like(item) if review is None else review
    return interaction_vectors(item[None, :], reviews[None, :], np.array([review is not None]), source)[0]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its norm (a zero row stays zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def recency_weights(count: int, gamma: float) -> np.ndarray:
    """Weights for `count` interactions ordered oldest first: gamma**age, age 0 = most recent."""
    ages = np.arange(count - 1, -1, -1, dtype=np.float64)
    return gamma**ages


def history_profile(item_vectors_oldest_first: Sequence[np.ndarray], config: ProfileConfig) -> np.ndarray:
    if len(item_vectors_oldest_first) == 0:
        raise ConfigError("the history is empty")
    recent = np.asarray(item_vectors_oldest_first[-config.last_n :], dtype=np.float64)
    weights = recency_weights(len(recent), config.gamma)
    return normalise((weights[:, None] * recent).sum(axis=0) / weights.sum())


def combine(history: np.ndarray | None, text: np.ndarray | None, config: ProfileConfig) -> np.ndarray:
    if history is None and text is None:
        raise ConfigError("a profile needs a history, a text, or both")
    if history is None:
        return normalise(text)
    if text is None:
        return normalise(history)
    return normalise((1 - config.text_weight) * history + config.text_weight * text)
