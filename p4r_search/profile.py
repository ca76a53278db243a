"""User profiles: history → one unit vector.

An interacted item is represented by the normalised mean of its persona vectors (what the index holds),
so a profile needs nothing but the index. The history profile is the recency-weighted mean of the last
N items, weight gamma**age with age 0 for the most recent (Persona4Rec: N=10, gamma=0.65). A free-text
profile is the embedding of the text (the user's own reviews, or a description of what they want).
Both together are mixed as (1 - text_weight) * history + text_weight * text, then normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class ProfileConfig:
    last_n: int = 10
    gamma: float = 0.65
    text_weight: float = 0.5

    def __post_init__(self) -> None:
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
