"""EASE, RP3β and item-kNN (evaluation/item_models.py) against their papers' definitions, written as loops."""

from __future__ import annotations

import numpy as np
import pytest

from p4r_search.errors import ConfigError
from p4r_search.evaluation.candidates import interaction_matrix
from p4r_search.evaluation.generators import GeneratorSpec, TrainingData, grid, scores
from p4r_search.evaluation.item_models import ease_weights, itemknn_weights, rp3beta_weights

HISTORIES = [[0, 1, 2], [0, 2], [1, 3], [0, 1, 3, 4], [2, 4], [0, 4], [3], [1, 2, 4]]
N_ITEMS = 5


@pytest.fixture
def train():
    return interaction_matrix(HISTORIES, N_ITEMS)


def test_ease_solves_its_constrained_ridge_regression_column_by_column(train):
    x = train.toarray().astype(np.float64)
    for l2 in (0.5, 5.0):
        found = ease_weights(train, l2)
        for j in range(N_ITEMS):
            # argmin ‖x_j − X b‖² + λ‖b‖² with b_j = 0: ridge regression of column j on the other columns
            others = [i for i in range(N_ITEMS) if i != j]
            a = x[:, others]
            b = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j])
            assert found[others, j] == pytest.approx(b, abs=1e-5)
            assert found[j, j] == 0.0
    with pytest.raises(ConfigError):
        ease_weights(train, 0.0)


def test_rp3beta_is_the_powered_two_step_walk_over_popularity_to_the_beta(train):
    x = train.toarray()
    alpha, beta = 0.8, 0.3
    user_degree, item_degree = x.sum(axis=1), x.sum(axis=0)
    expected = np.zeros((N_ITEMS, N_ITEMS))
    for i in range(N_ITEMS):
        for j in range(N_ITEMS):
            if i == j:
                continue
            walk = sum((x[u, i] / item_degree[i]) ** alpha * (x[u, j] / user_degree[u]) ** alpha
                       for u in range(len(x)) if x[u, i] and x[u, j])
            expected[i, j] = walk / item_degree[j] ** beta
    assert rp3beta_weights(train, alpha, beta) == pytest.approx(expected.astype(np.float32), abs=1e-6)


def test_itemknn_is_the_shrunk_cosine_keeping_each_rows_nearest(train):
    x = train.toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    shrink = 2.0
    expected = np.array([[0.0 if i == j else x[:, i] @ x[:, j] / (norms[i] * norms[j] + shrink)
                          for j in range(N_ITEMS)] for i in range(N_ITEMS)])
    assert itemknn_weights(train, shrink, None) == pytest.approx(expected, abs=1e-6)
    pruned = itemknn_weights(train, shrink, 2)
    for i in range(N_ITEMS):
        kept = np.flatnonzero(pruned[i])
        assert len(kept) <= 2 and set(kept) <= set(np.argsort(-expected[i], kind="stable")[:2])


def test_every_generator_scores_only_the_evaluated_rows_and_repeats(train):
    data = TrainingData(train, HISTORIES)
    for kind in ("popularity", "ease", "rp3beta", "itemknn", "als"):
        spec = grid(kind)[0]
        first = scores(spec, data, 3, seed=1)
        assert first.shape == (3, N_ITEMS) and first.dtype == np.float32
        assert np.array_equal(first, scores(spec, data, 3, seed=1))
    # an item-based model scores a user by their own row: user 0 and a user with the same items agree
    same = TrainingData(interaction_matrix([HISTORIES[0], *HISTORIES], N_ITEMS), [HISTORIES[0], *HISTORIES])
    ease = scores(GeneratorSpec("ease", {"l2": 5.0}), same, 2, seed=0)
    assert ease[0] == pytest.approx(ease[1])
