"""Score fusion for hybrid queries, over item-level score maps. Pure functions.

linear: each list is min-max normalised to [0, 1] over its own results (as Elasticsearch's linear
retriever with the minmax normaliser and OpenSearch's min_max normalisation-processor do), then
weighted and summed; an item missing from a list contributes 0 for it. When every score of a list is
equal, all of them normalise to 1.
rrf: sum over lists of weight / (rank_constant + rank), ranks starting at 1.
candidate fusion (rerank a caller's ordered candidates): (1 - w) * rank part + w * score part, where the
candidate at 0-based position r of k has rank part 1 - r / (k - 1) and the score is min-max normalised over
the candidates (0 when all are equal). Both lie in [0, 1]: w = 0 keeps the caller's order, w = 1 is the
persona score alone. `p4r eval loo` tunes w on validation with this same function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def minmax(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return {key: 1.0 for key in scores}
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Keys best first; ties broken by key so that results are deterministic."""
    return sorted(scores, key=lambda key: (-scores[key], key))


def linear(lists: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict[str, float]:
    fused: dict[str, float] = {}
    for scores, weight in zip(lists, weights, strict=True):
        for key, value in minmax(scores).items():
            fused[key] = fused.get(key, 0.0) + weight * value
    return fused


def rrf(lists: Sequence[Mapping[str, float]], weights: Sequence[float], rank_constant: int = 60) -> dict[str, float]:
    fused: dict[str, float] = {}
    for scores, weight in zip(lists, weights, strict=True):
        for rank, key in enumerate(ranked(scores), start=1):
            fused[key] = fused.get(key, 0.0) + weight / (rank_constant + rank)
    return fused


def candidate_fusion(scores: np.ndarray, weight: float) -> np.ndarray:
    """(rows, k) fused values of candidates given in their ranking's order, one row per user."""
    scores = np.asarray(scores, dtype=np.float64)
    k = scores.shape[1]
    rank_part = 1.0 - np.arange(k) / max(k - 1, 1)
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    spread = high > low
    score_part = np.where(spread, (scores - low) / np.where(spread, high - low, 1.0), 0.0)
    return (1 - weight) * rank_part[None, :] + weight * score_part
