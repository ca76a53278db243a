"""Where a reranker gains and loses: its test lift over the strongest generator per segment of cases.

Segments: the target item's CF evidence (its interactions in the test fold's training matrix) in terciles of
the cases whose target can be ranked at all, the cases whose target has no training review (no method ranks
them), and the user's history length. Each segment gets both means, the relative lift and its paired
bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .folds import Evaluator, Fold
from .settings import LooSettings
from .summary import lift_interval

HISTORY_BUCKETS = ((1, 1), (2, 3), (4, 9), (10, None))


def segments(fold: Fold, evaluator: Evaluator) -> dict[str, np.ndarray]:
    """Segment name → boolean mask over the fold's cases."""
    targets = evaluator.targets
    rankable = targets >= 0
    evidence = np.asarray(fold.train.sum(axis=0)).ravel()[np.maximum(targets, 0)]
    low, high = np.quantile(evidence[rankable], [1 / 3, 2 / 3]) if rankable.any() else (0.0, 0.0)
    out = {f"target interactions ≤ {low:g}": rankable & (evidence <= low),
           f"target interactions {low:g}–{high:g}": rankable & (evidence > low) & (evidence <= high),
           f"target interactions > {high:g}": rankable & (evidence > high),
           "target without a training review": ~rankable}
    lengths = np.array([len(h) for h in fold.histories])
    for start, end in HISTORY_BUCKETS:
        label = f"history {start}+" if end is None else (f"history {start}" if start == end else f"history {start}–{end}")
        out[label] = (lengths >= start) & (lengths <= (end if end is not None else np.inf))
    return out


def segment_table(summary: Mapping[str, Any], orders: Mapping[tuple[str, str], dict],
                  candidates: Mapping[str, Mapping[str, np.ndarray]], fold: Fold, evaluator: Evaluator,
                  settings: LooSettings) -> dict[str, list[dict[str, Any]]]:
    """Per lever of the summary ("candidates/reranker"): one row per segment."""
    metric = settings.tune_metric
    base = evaluator.per_case(candidates["test"][summary["strongest_generator"]])[metric]
    masks = segments(fold, evaluator)
    out: dict[str, list[dict[str, Any]]] = {}
    for lever in summary["levers"]:
        name, reranker = lever.split("/", 1)
        other = evaluator.per_case(orders[(name, reranker)]["test"])[metric]
        out[lever] = [segment_row(label, base[mask], other[mask], settings) for label, mask in masks.items()]
    return out


def segment_row(label: str, base: np.ndarray, other: np.ndarray, settings: LooSettings) -> dict[str, Any]:
    row: dict[str, Any] = {"segment": label, "cases": len(base)}
    if len(base):
        row |= {"generator": float(base.mean()), "reranker": float(other.mean()),
                "relative": float((other.mean() - base.mean()) / base.mean()) if base.mean() else None,
                "ci95": lift_interval(base, other, settings.bootstrap_resamples, settings.seed)["relative_ci95"]}
    return row
