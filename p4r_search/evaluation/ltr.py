"""A learned reranker: LightGBM LambdaRank over the union of the candidate generators' lists.

Per case (one user, one held-out target) the pool is the union of the generators' top-k lists; each pooled
item gets a feature row: every dense score matrix at (case, item), its rank in every list (k when absent,
so "not retrieved" is a value the trees can split on), and per-item constants. Missing values are NaN, which
LightGBM routes on its own.

Why these choices: LambdaRank optimises NDCG of the target's position directly, which is what the
leave-one-out evaluation measures. The model is fitted on the validation fold only; the number of rounds is
chosen by K-fold cross-validation over its cases (users), with early stopping on each held-out fold's
NDCG@10, and the final model is trained on every case with the mean best round, so the test fold is ranked
once by a model that never saw it. Cases whose pool misses the target have no positive and no gradient, so
they are left out. Defaults are conservative (small trees, slow learning, feature subsampling) because there
are a few hundred to a few thousand positives; one thread and fixed seeds make fits repeatable. The saved
model is JSON holding LightGBM's model text and its SHA-256: no pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    import lightgbm

FORMAT, VERSION = "p4r-learned-ranker", 1
# LightGBM parameters; num_iterations (max rounds) and early_stopping_round are used by fit_ranker itself.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "lambdarank_truncation_level": 20,
    "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.8,
    "bagging_fraction": 1.0, "bagging_freq": 0, "num_iterations": 500, "early_stopping_round": 30,
    "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1,
}


class RankerFileError(InputError):
    """A saved learned ranker that cannot be read: names the file and what is wrong."""


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as exc:
        raise ConfigError("the learned reranker needs lightgbm: pip install 'p4r-search[eval]'") from exc
    return lightgbm


@dataclass(frozen=True)
class RankingTable:
    """One fold's pool: per case up to P candidate items, each with a feature row."""

    pool: np.ndarray  # (C, P) int64 item indices, -1 = padding (pools differ in size)
    features: np.ndarray  # (C, P, F) float32; NaN where a value is missing (LightGBM handles NaN)
    names: tuple[str, ...]  # the F feature names


def candidate_pool(lists: Mapping[str, np.ndarray]) -> np.ndarray:
    """(C, P) the union of each case's lists, in order of first appearance when the lists are read rank by rank
    (rank 0 of every list in the mapping's order, then rank 1, ...), -1 padded to the longest pool.
    Negative entries in the lists are ignored."""
    arrays = [np.asarray(a, dtype=np.int64) for a in lists.values()]
    if not arrays or any(a.ndim != 2 or len(a) != len(arrays[0]) for a in arrays):
        raise ConfigError("candidate lists must be one or more (cases, k) arrays with the same number of cases")
    depth = max(a.shape[1] for a in arrays)
    if depth == 0:
        return np.zeros((len(arrays[0]), 0), dtype=np.int64)
    read = np.stack([a[:, r] for r in range(depth) for a in arrays if r < a.shape[1]], axis=1)
    order = np.argsort(read, axis=1, kind="stable")  # equal items stay in reading order: the first one leads
    ranked = np.take_along_axis(read, order, axis=1)
    repeat = np.zeros_like(read, dtype=bool)
    repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    drop = np.empty_like(repeat)
    np.put_along_axis(drop, order, repeat | (ranked < 0), axis=1)
    kept = np.argsort(drop, axis=1, kind="stable")  # kept positions first, in reading order
    sizes = (~drop).sum(axis=1)
    width = int(sizes.max(initial=0))
    pool = np.take_along_axis(read, kept[:, :width], axis=1)
    pool[np.arange(width)[None, :] >= sizes[:, None]] = -1
    return pool


def ranking_table(pool: np.ndarray, scores: Mapping[str, np.ndarray], lists: Mapping[str, np.ndarray],
                  item_values: Mapping[str, np.ndarray]) -> RankingTable:
    """Features of every pooled (case, item): for each name in `scores`, scores[name][case, item] (feature
    named as the key); for each list, the 0-based rank of the item in that case's list, or len(list row) when
    absent (feature "rank:<name>"); for each name in `item_values`, item_values[name][item] (a per-item value).
    Padding rows are NaN."""
    names = (*scores, *(f"rank:{name}" for name in lists), *item_values)
    if len(set(names)) != len(names):
        raise ConfigError(f"feature names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    valid = pool >= 0
    safe = np.where(valid, pool, 0)
    columns: list[np.ndarray] = []
    for name, matrix in scores.items():
        if matrix.ndim != 2 or len(matrix) != len(pool):
            raise ConfigError(f"score matrix {name!r} has shape {matrix.shape}; expected ({len(pool)}, items)")
        columns.append(np.take_along_axis(matrix, safe, axis=1))
    for name, ranked in lists.items():
        if ranked.ndim != 2 or len(ranked) != len(pool):
            raise ConfigError(f"list {name!r} has shape {ranked.shape}; expected ({len(pool)}, k)")
        hits = (safe[:, :, None] == ranked[:, None, :]) & valid[:, :, None]
        columns.append(np.where(hits.any(axis=2), hits.argmax(axis=2), ranked.shape[1]))
    for name, values in item_values.items():
        if values.ndim != 1:
            raise ConfigError(f"item values {name!r} must be one value per item, not shape {values.shape}")
        columns.append(values[safe])
    shape = (*pool.shape, len(names))
    features = np.stack(columns, axis=2).astype(np.float32) if columns else np.zeros(shape, np.float32)
    features[~valid] = np.nan
    return RankingTable(np.asarray(pool, dtype=np.int64), features, names)


@dataclass
class LearnedRanker:
    names: tuple[str, ...]  # the features it uses, in order
    booster: lightgbm.Booster
    trees: int  # number of boosting rounds, chosen by cross-validation
    cv: dict[str, Any] = field(default_factory=dict)  # per-fold best iteration and NDCG@10, and their means

    def scores(self, table: RankingTable) -> np.ndarray:
        """(C, P) model scores of the pooled items, -inf at padding."""
        valid = table.pool >= 0
        out = np.full(table.pool.shape, -np.inf)
        if valid.any():
            out[valid] = self.booster.predict(_columns(table, self.names)[valid], num_threads=1)
        return out

    def order(self, table: RankingTable, k: int) -> np.ndarray:
        """(C, k) pooled items by descending score; equal scores keep pool order."""
        sizes = (table.pool >= 0).sum(axis=1)
        if len(sizes) and sizes.min() < k:
            case = int(sizes.argmin())
            raise ConfigError(f"cannot rank {k} items: case {case}'s pool holds only {sizes[case]}")
        best = np.argsort(-self.scores(table), axis=1, kind="stable")[:, :k]
        return np.take_along_axis(table.pool, best, axis=1)

    def save(self, path: Path) -> None:
        model = self.booster.model_to_string()
        document = {"format": FORMAT, "version": VERSION, "names": list(self.names), "trees": self.trees,
                    "cv": self.cv, "model": model, "model_sha256": _digest(model)}
        temporary = Path(f"{path}.tmp")
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> LearnedRanker:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RankerFileError(str(path), None, f"cannot read a learned ranker: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise RankerFileError(str(path), None, f"not a learned ranker file (no \"format\": {FORMAT!r})")
        if document.get("version") != VERSION:
            raise RankerFileError(str(path), None, f"unsupported version {document.get('version')!r}; "
                                                   f"this release reads version {VERSION}")
        names, trees, cv, model = (document.get(key) for key in ("names", "trees", "cv", "model"))
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(trees, int)
                and isinstance(cv, dict) and isinstance(model, str)):
            raise RankerFileError(str(path), None, "names, trees, cv or model is missing or of the wrong type")
        if document.get("model_sha256") != _digest(model):
            # checked before LightGBM parses it: some damaged model texts abort the process instead of raising
            raise RankerFileError(str(path), None, "the model text does not match its checksum (damaged file)")
        lightgbm = _lightgbm()
        try:
            booster = lightgbm.Booster(model_str=model)
        except lightgbm.basic.LightGBMError as exc:
            raise RankerFileError(str(path), None, f"the LightGBM model does not load: {exc}") from exc
        if booster.num_feature() != len(names):
            raise RankerFileError(str(path), None, f"the model uses {booster.num_feature()} features but the "
                                                   f"file names {len(names)}")
        return cls(tuple(names), booster, trees, cv)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _columns(table: RankingTable, names: Sequence[str]) -> np.ndarray:
    """(C, P, len(names)) the table's features in the order of `names`."""
    where = {name: i for i, name in enumerate(table.names)}
    missing = [name for name in names if name not in where]
    if missing:
        raise ConfigError(f"the ranking table lacks feature(s) {', '.join(map(repr, missing))}")
    return table.features[:, :, [where[name] for name in names]]


def fit_ranker(table: RankingTable, targets: np.ndarray, names: Sequence[str], *, folds: int = 5, seed: int = 0,
               params: Mapping[str, Any] | None = None) -> LearnedRanker:
    """LightGBM lambdarank (label 1 for the case's target if it is in its pool, 0 for the others; cases whose
    pool misses the target carry no signal and are left out of training). `folds`-fold cross-validation over
    cases (= users; KFold shuffled with seed) with early stopping on each held-out fold's ndcg@10 chooses the
    number of rounds (the mean of the folds' best iterations, at least 1); the final model is trained on all
    cases with that number. `params` override DEFAULT_PARAMS (num_iterations = the most rounds tried,
    early_stopping_round = the patience)."""
    from sklearn.model_selection import KFold

    lightgbm = _lightgbm()
    names = tuple(names)
    if targets.shape != table.pool.shape[:1]:
        raise ConfigError(f"targets has shape {targets.shape}; expected ({len(table.pool)},)")
    valid = table.pool >= 0
    labels = ((table.pool == targets[:, None]) & (targets[:, None] >= 0)).astype(np.float32)
    cases = np.flatnonzero(labels.any(axis=1))
    if folds < 2 or len(cases) < folds:
        raise ConfigError(f"{folds}-fold cross-validation needs folds >= 2 and at least that many cases whose "
                          f"pool holds the target; {len(cases)} of {len(targets)} do")
    features = _columns(table, names)
    settings = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}  # `seed` derives the feature_fraction seed
    most, patience = int(settings.pop("num_iterations")), int(settings.pop("early_stopping_round"))

    def dataset(rows: np.ndarray, reference: Any = None) -> Any:
        mask = valid[rows]
        return lightgbm.Dataset(features[rows][mask], labels[rows][mask], group=mask.sum(axis=1),
                                reference=reference, params={"verbosity": -1}, free_raw_data=True)

    runs: list[dict[str, Any]] = []
    for fold, (train, held_out) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(cases)):
        train_set = dataset(cases[train])
        booster = lightgbm.train(settings, train_set, num_boost_round=most,
                                 valid_sets=[dataset(cases[held_out], train_set)], valid_names=["held_out"],
                                 callbacks=[lightgbm.early_stopping(patience, first_metric_only=True,
                                                                    verbose=False)])
        best = booster.best_iteration or booster.current_iteration()  # 0 when it ran out of splits
        runs.append({"fold": fold, "cases": len(held_out), "best_iteration": int(best),
                     "ndcg@10": float(booster.best_score["held_out"]["ndcg@10"])})
    trees = max(1, round(float(np.mean([run["best_iteration"] for run in runs]))))
    cv = {"folds": runs, "mean_best_iteration": float(np.mean([run["best_iteration"] for run in runs])),
          "mean_ndcg@10": float(np.mean([run["ndcg@10"] for run in runs])), "cases_used": len(cases),
          "cases_without_target": len(targets) - len(cases), "seed": seed}
    final = lightgbm.train(settings, dataset(cases), num_boost_round=trees)
    return LearnedRanker(names, final, trees, cv)
