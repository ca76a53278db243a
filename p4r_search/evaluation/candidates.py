"""The pieces every candidate generator shares (generators.py): the binary user x item matrix of the training
interactions (csr, rows = users), popularity, and `top_k`, which turns dense (users x items) scores into
candidate lists that exclude each user's history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix


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
