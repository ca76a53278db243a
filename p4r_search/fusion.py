"""Score fusion for hybrid queries, over item-level score maps. Pure functions.

linear: each list is min-max normalised to [0, 1] over its own results (as Elasticsearch's linear
retriever with the minmax normaliser and OpenSearch's min_max normalisation-processor do), then
weighted and summed; an item missing from a list contributes 0 for it. When every score of a list is
equal, all of them normalise to 1.
rrf: sum over lists of weight / (rank_constant + rank), ranks starting at 1.
candidate fusion (rerank a caller's ordered candidates): (1 - w) * rank part + w * score part, where the
candidate at 0-based position r of k has rank part 1 - r / (k - 1) and the score is min-max normalised over
the candidates (0 when all are equal). Both lie in [0, 1]: w = 0 keeps the caller's order, w = 1 is the
persona score alone. With the caller's own scores of the candidates, the rank part is their min-max
normalised score instead (`candidate_score_fusion`: a generator's score says how far ahead a candidate is,
which its rank does not). `p4r eval loo` tunes w on validation with these same functions.
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
    return (1 - weight) * rank_part[None, :] + weight * row_minmax(scores)


def candidate_score_fusion(candidate_scores: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """(rows, k) (1 - w) * min-max of the caller's candidate scores + w * min-max of the persona scores."""
    return (1 - weight) * row_minmax(candidate_scores) + weight * row_minmax(scores)


def row_minmax(values: np.ndarray) -> np.ndarray:
    """Each row min-max scaled to [0, 1]; a row without spread is 0."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(axis=1, keepdims=True), values.max(axis=1, keepdims=True)
    spread = high > low
    return np.where(spread, (values - low) / np.where(spread, high - low, 1.0), 0.0)
