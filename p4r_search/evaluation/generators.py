"""Every candidate generator of `p4r eval loo`, behind one call: `scores(spec, training, n_users, seed)`.

A generator is fitted on a fold's training data (the binary users × items matrix and the same rows as
ordered sequences) and scores every item for the fold's evaluated users (the first rows). Each is tuned on
validation NDCG@10 over the small grid in `GRIDS` (seed fixed, one thread, so fits repeat exactly) and
refitted at the chosen point on the test fold.

- popularity: training interactions per item, the same for everyone;
- bpr, als: `implicit`'s matrix factorisation;
- ease, rp3beta, itemknn: the item-based models of item_models.py;
- sasrec: the sequential transformer of sasrec.py, trained with full cross-entropy.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from ..errors import ChoiceError
from .candidates import popularity_scores, top_k
from .item_models import ease_weights, item_scores, itemknn_weights, rp3beta_weights
from .names import GENERATOR_KINDS

log = logging.getLogger(__name__)

GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "popularity": {},
    "bpr": {"factors": (16, 64), "learning_rate": (0.01, 0.05), "regularization": (0.001, 0.01),
            "iterations": (100, 300)},
    "als": {"factors": (16, 64), "regularization": (0.01, 0.1, 1.0), "alpha": (1.0, 10.0), "iterations": (15,)},
    # the sweep, 5…1000, on a log scale
    "ease": {"l2": (5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)},
    "rp3beta": {"alpha": (0.5, 0.75, 1.0, 1.25), "beta": (0.0, 0.2, 0.4, 0.6, 0.8)},
    "itemknn": {"shrink": (0.0, 10.0, 50.0, 200.0), "neighbours": (20, 100, None)},
}


@dataclass(frozen=True)
class TrainingData:
    """A fold's training side: rows are the evaluated users' histories first, then every other user's."""

    matrix: csr_matrix
    sequences: list[list[int]]  # the same rows, oldest first (for sequential models)


@dataclass(frozen=True)
class GeneratorSpec:
    kind: str
    params: dict[str, Any]

    def label(self) -> str:
        return f"{self.kind}(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def grid(kind: str) -> list[GeneratorSpec]:
    if kind not in GENERATOR_KINDS:
        raise ChoiceError("candidate generator", kind, GENERATOR_KINDS)
    if kind == "sasrec":
        from .sasrec import SASREC_GRID

        points = SASREC_GRID
    else:
        points = GRIDS[kind]
    names = list(points)
    return [GeneratorSpec(kind, dict(zip(names, values))) for values in itertools.product(*points.values())]


def scores(spec: GeneratorSpec, training: TrainingData, n_users: int, seed: int) -> np.ndarray:
    """(n_users, items) scores of the first n_users rows of the training data, fitted on all of them."""
    with threadpool_limits(1):
        return SCORERS[spec.kind](spec.params, training, n_users, seed)


def implicit_scores(kind: str) -> Callable[..., np.ndarray]:
    def fit(params: Mapping[str, Any], training: TrainingData, n_users: int, seed: int) -> np.ndarray:
        if kind == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking as Model
        else:
            from implicit.cpu.als import AlternatingLeastSquares as Model
        model = Model(**params, random_state=seed, num_threads=1)
        model.fit(training.matrix, show_progress=False)
        return np.asarray(model.user_factors[:n_users] @ model.item_factors.T, dtype=np.float32)

    return fit


def item_based(weights: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def fit(params: Mapping[str, Any], training: TrainingData, n_users: int, seed: int) -> np.ndarray:
        return item_scores(training.matrix, weights(training.matrix, **params), n_users)

    return fit


def sasrec(params: Mapping[str, Any], training: TrainingData, n_users: int, seed: int) -> np.ndarray:
    from .sasrec import sasrec_scores

    return sasrec_scores(training.sequences, training.matrix.shape[1], n_users, params, seed)


SCORERS: dict[str, Callable[..., np.ndarray]] = {
    "popularity": lambda params, training, n_users, seed: np.array(popularity_scores(training.matrix, n_users)),
    "bpr": implicit_scores("bpr"),
    "als": implicit_scores("als"),
    "ease": item_based(ease_weights),
    "rp3beta": item_based(rp3beta_weights),
    "itemknn": item_based(itemknn_weights),
    "sasrec": sasrec,
}


@dataclass(frozen=True)
class Tuned:
    """A generator tuned on validation: its chosen point, that point's validation metric, both folds' scores."""

    spec: GeneratorSpec
    validation_metric: float
    validation: np.ndarray
    test: np.ndarray


def tune(kind: str, validation: TrainingData, test: TrainingData, histories: Sequence[Sequence[int]],
         n_users: tuple[int, int], metric: Callable[[np.ndarray], float], candidates: int, seed: int) -> Tuned:
    """The grid point best on validation (ties: the earlier point), refitted on the test fold."""
    best: tuple[float, GeneratorSpec, np.ndarray] | None = None
    for spec in grid(kind):
        found = scores(spec, validation, n_users[0], seed)
        value = metric(top_k(found, histories, candidates))
        log.info("validation %s = %.4f", spec.label(), value)
        if best is None or value > best[0]:
            best = (value, spec, found)
    assert best is not None
    value, spec, found = best
    return Tuned(spec, value, found, scores(spec, test, n_users[1], seed))
