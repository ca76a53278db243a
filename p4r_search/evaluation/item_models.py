"""Item-based candidate generators that recommender teams run: EASE, RP3β and item-kNN, in numpy/scipy.

Each takes the binary users × items training matrix and returns an items × items weight matrix W; a user's
scores are their row of the matrix times W (`item_scores`). They are a few lines each, so they stay here,
checked against the papers' definitions written as loops in tests/test_eval_item_models.py:

- EASE (Steck, WWW 2019, "Embarrassingly Shallow Autoencoders"): B = argmin ‖X − XB‖² + λ‖B‖² with
  diag(B) = 0, in closed form: P = (XᵀX + λI)⁻¹, B_ij = −P_ij / P_jj, B_jj = 0.
- RP3β (Paudel et al., ACM TiiS 2017; the form of Dacrema et al.'s reproducibility study, RecSys 2019):
  W = (P_ui)^α-weighted two-step random walk item → user → item, W_ij = Σ_u P_iu^α P_uj^α with P_ui the
  row-stochastic user → item and P_iu the row-stochastic item → user matrix, each column j then divided by
  popularity_j^β; β = 0 is P3α.
- Item-kNN (Sarwar et al., WWW 2001; shrinkage as in Dacrema et al.): cosine of item columns, shrunk
  S_ij = x_i·x_j / (‖x_i‖‖x_j‖ + h), diag 0, each item's `neighbours` largest similarities kept.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix, diags

from ..errors import ConfigError


def ease_weights(train: csr_matrix, l2: float) -> np.ndarray:
    """EASE's closed form; dense items × items (fine to ~20k items: one inverse of the Gram matrix)."""
    if l2 <= 0:
        raise ConfigError(f"EASE needs a positive L2 weight, got {l2}")
    gram = (train.T @ train).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def rp3beta_weights(train: csr_matrix, alpha: float, beta: float) -> np.ndarray:
    """RP3β: the α-powered two-step walk item → user → item, column j divided by popularity_j^β."""
    binary = train.copy().astype(np.float64)
    binary.data[:] = 1.0
    user_to_item = row_stochastic(binary).power(alpha)
    item_to_user = row_stochastic(binary.T.tocsr()).power(alpha)
    walk = (item_to_user @ user_to_item).toarray()
    popularity = np.asarray(binary.sum(axis=0)).ravel()
    walk /= np.where(popularity > 0, popularity, 1.0)[None, :] ** beta
    walk[np.diag_indices_from(walk)] = 0.0
    return walk.astype(np.float32)


def itemknn_weights(train: csr_matrix, shrink: float, neighbours: int | None) -> np.ndarray:
    """Shrunk cosine between item columns; each row keeps its `neighbours` largest (None: all)."""
    binary = train.copy().astype(np.float64)
    binary.data[:] = 1.0
    dot = (binary.T @ binary).toarray()
    norms = np.sqrt(np.diag(dot))
    similarity = dot / (norms[:, None] * norms[None, :] + shrink + 1e-12)
    similarity[np.diag_indices_from(similarity)] = 0.0
    if neighbours is not None and neighbours < similarity.shape[1]:
        similarity = keep_largest(similarity, neighbours)
    return similarity.astype(np.float32)


def item_scores(train: csr_matrix, weights: np.ndarray, n_users: int) -> np.ndarray:
    """(n_users, items) scores of the first n_users rows: their interactions times the item weights."""
    return np.asarray(train[:n_users] @ weights, dtype=np.float32)


def row_stochastic(matrix: csr_matrix) -> csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    return (diags(1.0 / np.where(sums > 0, sums, 1.0)) @ matrix).tocsr()


def keep_largest(matrix: np.ndarray, k: int) -> np.ndarray:
    """Each row's k largest values kept, the rest set to 0 (ties at the k-th: the lower column index)."""
    order = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(matrix)
    np.put_along_axis(out, order, np.take_along_axis(matrix, order, axis=1), axis=1)
    return out
