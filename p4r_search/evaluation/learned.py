"""The learned reranker of `p4r eval loo`: LightGBM LambdaRank over the pool of every generator's top k.

Features of a pooled (user, item): each generator's score and rank (absent: k), the item's popularity (its
training interactions), training reviews and personas; persona max-sim under every profile source (at the
encoder, persona vector kind, N and gamma the `persona` row chose on validation), the matched persona's
support, the single-vector cosine, and BM25 of the user's reviews. It is trained on the validation cases
(user-level cross-validation inside `ltr.fit_ranker` picks the number of trees) and measured on test once.
Its validation row is out-of-fold: each fifth of the validation users ranked by a model fitted on the other
four fifths, so that it competes with the tuned rerankers on equal terms when the headline is chosen.

Three feature sets: `ltr` (all), `ltr-no-persona` (without the persona features: what personas add) and
`ltr-cf` (generators and popularity only: what any text adds).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from .folds import Evaluator, Fold
from .ltr import RankingTable, candidate_pool, fit_ranker, ranking_table
from .settings import LooSettings, Row
from .tuning import Scorer, SplitLists
from .variants import Variant
from .vectors import by_support

POOL = "pool"
FEATURE_SETS = ("ltr", "ltr-no-persona", "ltr-cf")
OUT_OF_FOLD = 5


def feature_names(table: RankingTable, feature_set: str) -> list[str]:
    if feature_set == "ltr":
        return list(table.names)
    if feature_set == "ltr-no-persona":
        return [n for n in table.names if not n.startswith("persona")]
    return [n for n in table.names if n.startswith(("score:", "rank:")) or n == "popularity"]


def persona_setting(rows: Sequence[Row], strongest: str) -> dict[str, Any]:
    (row,) = [r for r in rows if (r.split, r.candidates, r.reranker) == ("validation", strongest, "persona")]
    return row.params


def fold_table(lists: SplitLists, scorer: Scorer, setting: Mapping[str, Any], profiles: Sequence[str],
               bm25: np.ndarray, items: Mapping[str, np.ndarray], supports: np.ndarray) -> RankingTable:
    """The ranking table of one split: its pool and every feature above."""
    n, gamma = setting["N"], setting["gamma"]
    chosen = Variant(setting["profile"], setting["encoder"], setting["persona_vector"])
    scores: dict[str, np.ndarray] = {f"score:{g}": s for g, s in lists.generator_scores.items() if g != "popularity"}
    for profile in profiles:
        scores[f"persona:{profile}"] = scorer(Variant(profile, chosen.encoder, chosen.persona_vector),
                                              "persona", n, gamma)
    scores["persona_support"] = matched_support(scorer, chosen, n, gamma, supports)
    scores["single"] = scorer(chosen, "single", n, gamma)
    scores["bm25"] = bm25
    return ranking_table(candidate_pool(lists.candidates), scores, lists.candidates,
                         {"popularity": lists.evidence, **items})


def matched_support(scorer: Scorer, variant: Variant, last_n: int, gamma: float, supports: np.ndarray) -> np.ndarray:
    """(users, items) the support of the persona that gives each item its score (its best persona)."""
    embedded = scorer.embedded[variant]
    profiles = scorer.histories.profiles(embedded.items, embedded.texts, variant.profile, last_n, gamma)
    sims = profiles @ embedded.personas.vectors.T
    offsets = embedded.personas.offsets
    out = np.zeros((len(profiles), len(offsets) - 1), dtype=np.float32)
    for item, (start, end) in enumerate(itertools.pairwise(offsets)):
        out[:, item] = supports[start:end][np.argmax(sims[:, start:end], axis=1)]
    return out


def out_of_fold_order(table: RankingTable, targets: np.ndarray, names: list[str], k: int, seed: int) -> np.ndarray:
    """Each validation case ranked by a model that never saw its user."""
    order = np.empty((len(targets), k), dtype=np.int64)
    for fit_cases, held in KFold(OUT_OF_FOLD, shuffle=True, random_state=seed).split(targets):
        model = fit_ranker(subset(table, fit_cases), targets[fit_cases], names, seed=seed)
        order[held] = model.order(subset(table, held), k)
    return order


def subset(table: RankingTable, cases: np.ndarray) -> RankingTable:
    return RankingTable(table.pool[cases], table.features[cases], table.names)


def learned_rows(rows: Sequence[Row], lists: Mapping[str, SplitLists], scorers: Mapping[str, Scorer],
                 bm25: Mapping[str, np.ndarray], item_values: Mapping[str, np.ndarray], supports: np.ndarray,
                 evaluators: Mapping[str, Evaluator], folds: Mapping[str, Fold], strongest: str,
                 settings: LooSettings) -> tuple[list[Row], dict, dict[str, Any]]:
    """Rows of the three feature sets on both splits, their orders (for the headline's intervals), and the
    fitted models' descriptions (features, trees, cross-validation) for the report."""
    setting = persona_setting(rows, strongest)
    tables = {split: fold_table(lists[split], scorers[split], setting, settings.profile_sources, bm25[split],
                                item_values, supports) for split in ("validation", "test")}
    targets = evaluators["validation"].targets
    k = settings.candidates
    out, orders, models = [], {}, {}
    for feature_set in FEATURE_SETS:
        names = feature_names(tables["validation"], feature_set)
        model = fit_ranker(tables["validation"], targets, names, seed=settings.seed)
        found = {"validation": out_of_fold_order(tables["validation"], targets, names, k, settings.seed),
                 "test": model.order(tables["test"], k)}
        orders[(POOL, feature_set)] = found
        models[feature_set] = {"features": names, "trees": model.trees, "cv": model.cv, "model": model}
        params = {"features": len(names), "trees": model.trees, "persona_setting": dict(setting)}
        out += [Row(split, POOL, feature_set, evaluators[split](found[split]), params) for split in found]
    pool_sizes = (tables["test"].pool >= 0).sum(axis=1)
    models["pool"] = {"mean_size": float(pool_sizes.mean()), "recall": {
        split: float(np.mean([t in p for t, p in zip(evaluators[split].targets, tables[split].pool)]))
        for split in tables}}
    return out, orders, models


def item_constants(records: Mapping, catalog_items: Sequence[str], reviews: Mapping[str, list]
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per item: its training reviews and personas (features); per persona, in the vectors' order, its support."""
    values = {"reviews": np.array([len(reviews[i]) for i in catalog_items], dtype=np.float32),
              "personas": np.array([len(records[i].personas) for i in catalog_items], dtype=np.float32)}
    supports = np.array([p.support for i in catalog_items for p in by_support(records[i])], dtype=np.float32)
    return values, supports
