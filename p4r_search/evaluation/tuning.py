"""Grid search of the vector rerankers (persona max-sim, fusion, single vector) on validation; test at the choice."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .candidates import top_k
from .rerankers import PersonaSetting, cosine, fused_order, max_sim, profiles, rerank

if TYPE_CHECKING:
    from .protocol import Evaluator, Fold, LooSettings, Representations, Row

FULL_CATALOG = "none"


def setting_of(params: dict[str, Any]) -> PersonaSetting:
    return PersonaSetting(last_n=params["N"], gamma=params["gamma"], per_item=params.get("personas_per_item", 0))


def tune_vector_rerankers(val: Fold, test: Fold, reps: Representations, candidates: dict[str, dict[str, np.ndarray]],
                          settings: LooSettings, evaluators: dict[str, Evaluator]) -> list[Row]:
    from .protocol import Row

    tops = {n: reps.personas.top(n) for n in settings.personas_per_item}
    item_vectors = {n: personas.item_vectors() for n, personas in tops.items()}

    def scorer(reranker: str) -> Callable[[Fold, PersonaSetting], np.ndarray]:
        if reranker == "single":
            return lambda fold, s: cosine(profiles(fold.histories, reps.reviews, s), reps.reviews)
        return lambda fold, s: max_sim(profiles(fold.histories, item_vectors[s.per_item], s), tops[s.per_item])

    def order(split: str, fold: Fold, name: str, reranker: str, scores: np.ndarray, params: dict[str, Any]):
        if name == FULL_CATALOG:
            return top_k(scores, fold.histories, settings.candidates)
        cands = candidates[split][name]
        return fused_order(cands, scores, params["weight"]) if reranker == "fusion" else rerank(scores, cands)

    persona_grid = [{"N": n, "gamma": g, "personas_per_item": p} for n, g, p in
                    itertools.product(settings.last_ns, settings.gammas, settings.personas_per_item)]
    single_grid = [{"N": n, "gamma": g} for n, g in itertools.product(settings.last_ns, settings.gammas)]
    names = [*candidates["validation"], FULL_CATALOG]
    plan = [("persona", persona_grid, names), ("single", single_grid, names),
            ("fusion", persona_grid, names[:-1])]
    chosen: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    metric = settings.tune_metric
    for reranker, grid, targets in plan:
        score = scorer(reranker)
        for params in grid:
            scores = score(val, setting_of(params))
            weights = settings.fusion_weights if reranker == "fusion" else (None,)
            for name, weight in itertools.product(targets, weights):
                point = params if weight is None else {**params, "weight": weight}
                value = evaluators["validation"](order("validation", val, name, reranker, scores, point))[metric]
                if value > chosen.get((name, reranker), (-1.0, {}))[0]:
                    chosen[(name, reranker)] = (value, point)

    rows = []
    for split, fold in (("validation", val), ("test", test)):
        cache: dict[tuple[str, PersonaSetting], np.ndarray] = {}
        for (name, reranker), (_, params) in chosen.items():
            kind = "single" if reranker == "single" else "persona"
            key = (kind, setting_of(params))
            if key not in cache:
                cache[key] = scorer(kind)(fold, key[1])
            metrics = evaluators[split](order(split, fold, name, reranker, cache[key], params))
            rows.append(Row(split, name, reranker, metrics, params))
    return rows
