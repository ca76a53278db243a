"""Paired bootstrap confidence intervals for the difference of two rankers measured on the same queries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

BATCH = 100  # resamples drawn at a time, to bound memory on large query sets


@dataclass(frozen=True)
class PairedDifference:
    base: float
    other: float
    difference: float  # other − base
    ci95: tuple[float, float]


def paired_difference(base: np.ndarray, other: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Mean per-query difference, with the 2.5th and 97.5th percentiles of its bootstrap distribution
    (queries resampled with replacement, the same queries for both rankers)."""
    if base.shape != other.shape or base.ndim != 1 or not len(base):
        raise ConfigError("paired values need two equal-length, non-empty vectors")
    diff = other - base
    rng = np.random.default_rng(seed)
    means = np.concatenate([
        diff[rng.integers(0, len(diff), size=(min(BATCH, resamples - start), len(diff)))].mean(axis=1)
        for start in range(0, resamples, BATCH)
    ])
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(float(base.mean()), float(other.mean()), float(diff.mean()), (float(low), float(high)))
