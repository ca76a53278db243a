"""Candidate generators: popularity, and collaborative filtering from `implicit` (BPR, ALS), tuned on validation.

All work on a binary user x item matrix of the training interactions (csr, rows = users). Scores are dense
(users x items) matrices; `top_k` turns them into candidate lists that exclude each user's history.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from ..errors import ChoiceError

CF_KINDS = ("bpr", "als")
# Small grids, tuned on validation NDCG@10. Seeds are fixed and one thread is used, so fits are repeatable.
CF_GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "bpr": {"factors": (16, 64), "learning_rate": (0.01, 0.05), "regularization": (0.001, 0.01),
            "iterations": (100, 300)},
    "als": {"factors": (16, 64), "regularization": (0.01, 0.1, 1.0), "alpha": (1.0, 10.0), "iterations": (15,)},
}


@dataclass(frozen=True)
class CFParams:
    kind: str
    params: dict[str, Any]

    def label(self) -> str:
        return f"{self.kind}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def grid(kind: str) -> list[CFParams]:
    if kind not in CF_GRIDS:
        raise ChoiceError("CF model", kind, CF_KINDS)
    names = list(CF_GRIDS[kind])
    return [CFParams(kind, dict(zip(names, values))) for values in itertools.product(*CF_GRIDS[kind].values())]


def interaction_matrix(histories: Sequence[Sequence[int]], n_items: int) -> csr_matrix:
    """Binary users x items matrix; row u holds the item indices of histories[u]."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if histories else np.zeros(0, int)
    matrix = csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(histories), n_items))
    matrix.data[:] = 1.0  # a repeated (user, item) is still one interaction
    return matrix


def popularity_scores(train: csr_matrix, n_users: int) -> np.ndarray:
    """Every user gets the same scores: how many training users interacted with each item."""
    counts = np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()
    return np.broadcast_to(counts, (n_users, len(counts)))


def cf_scores(params: CFParams, train: csr_matrix, n_users: int, seed: int) -> np.ndarray:
    """Fit the model on `train` and score every item for its first `n_users` rows (the evaluated users)."""
    with threadpool_limits(1):
        if params.kind == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            model = BayesianPersonalizedRanking(**params.params, random_state=seed, num_threads=1)
        elif params.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(**params.params, random_state=seed, num_threads=1)
        else:
            raise ChoiceError("CF model", params.kind, CF_KINDS)
        model.fit(train, show_progress=False)
        return np.asarray(model.user_factors[:n_users] @ model.item_factors.T, dtype=np.float32)


def top_k(scores: np.ndarray, histories: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """(users, k) item indices by descending score, each user's history excluded; ties by item index (= id)."""
    masked = np.array(scores, dtype=np.float64, copy=True)
    for u, history in enumerate(histories):
        masked[u, list(history)] = -np.inf
    if k >= masked.shape[1]:
        return np.argsort(-masked, axis=1, kind="stable")[:, :k]
    # a partial sort: the k-th best value of each row, then what is above it and the first of its ties
    best = np.take_along_axis(masked, np.argpartition(-masked, k - 1, axis=1)[:, :k], axis=1).min(axis=1)
    out = np.empty((len(masked), k), dtype=np.int64)
    for u, row in enumerate(masked):
        above = np.flatnonzero(row > best[u])
        chosen = np.concatenate([above, np.flatnonzero(row == best[u])[: k - len(above)]])
        out[u] = chosen[np.lexsort((chosen, -row[chosen]))]
    return out
