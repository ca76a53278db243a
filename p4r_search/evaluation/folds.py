"""The leave-one-out folds (validation, test) as item indices, and the evaluator of an order of items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix

from .candidates import interaction_matrix
from .data import EvalData
from .generators import TrainingData
from .split import LooSplit, ordered_interactions


@dataclass(frozen=True)
class Fold:
    """One split of the cases, as item indices: histories, targets, and the CF training matrix, whose rows are
    the evaluated users' histories first, then every other user's interactions (`other_*`, oldest first)."""

    name: str
    users: list[str]
    histories: list[list[int]]
    targets: list[str]
    train: csr_matrix
    other_users: list[str] = field(default_factory=list)
    other_histories: list[list[int]] = field(default_factory=list)

    def training_data(self) -> TrainingData:
        return TrainingData(self.train, [*self.histories, *self.other_histories])


def make_folds(split: LooSplit, data: EvalData, position: dict[str, int]) -> list[Fold]:
    evaluated = {case.user_id for case in split.test}
    other_users = [user for user in sorted(data.interactions) if user not in evaluated]
    others = [[position[i.item_id] for i in ordered_interactions(data.interactions[user]) if i.item_id in position]
              for user in other_users]
    folds = []
    for name, cases in split.case_sets().items():
        histories = [[position[i] for i in case.history if i in position] for case in cases]
        folds.append(Fold(name, [c.user_id for c in cases], histories, [c.target for c in cases],
                          interaction_matrix(histories + others, len(position)), other_users, others))
    return folds


class Evaluator:
    """Turns index orders into metrics for one fold (one relevant item per case; HR = Recall here)."""

    def __init__(self, fold: Fold, item_ids: list[str], ks: tuple[int, ...]):
        position = {item_id: i for i, item_id in enumerate(item_ids)}
        self.targets = np.array([position.get(t, -1) for t in fold.targets], dtype=np.int64)
        self.ks = ks

    def ranks(self, order: np.ndarray) -> np.ndarray:
        """1-based rank of each case's target in its order (a huge number where it is absent)."""
        hits = np.asarray(order) == self.targets[:, None]
        return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.iinfo(np.int64).max)

    def per_case(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric, one value per case: the metrics module's definitions for a single relevant item."""
        rank = self.ranks(order)
        return {f"{name}@{k}": metric_values(name, rank, k) for name in ("HR", "MRR", "NDCG") for k in self.ks}

    def value(self, order: np.ndarray, metric: str) -> float:
        """The mean of one metric ("NDCG@10"): what the grids tune on, without computing the others."""
        name, k = metric.split("@")
        return float(metric_values(name, self.ranks(order), int(k)).mean())

    def __call__(self, order: np.ndarray) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_case(order).items()}


def metric_values(name: str, rank: np.ndarray, k: int) -> np.ndarray:
    inside = rank <= k
    safe = np.where(inside, rank, 1).astype(np.float64)
    value = {"HR": np.ones_like(safe), "MRR": 1.0 / safe, "NDCG": 1.0 / np.log2(safe + 1.0)}[name]
    return np.where(inside, value, 0.0)
