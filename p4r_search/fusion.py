"""Score fusion for hybrid queries, over item-level score maps. Pure functions.

linear: each list is min-max normalised to [0, 1] over its own results (as Elasticsearch's linear
retriever with the minmax normaliser and OpenSearch's min_max normalisation-processor do), then
weighted and summed; an item missing from a list contributes 0 for it. When every score of a list is
equal, all of them normalise to 1.
rrf: sum over lists of weight / (rank_constant + rank), ranks starting at 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
