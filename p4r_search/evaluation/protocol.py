"""The leave-one-out protocol (Persona4Rec, issue #5): split, represent, generate candidates, rerank, tune, report.

Everything that is tuned (the CF models' hyperparameters, N, gamma, personas per item, the fusion weight) is
chosen on the validation item by `LooSettings.tune_metric`; test numbers are then measured once, at the
chosen setting. Grid ties go to the earlier grid point.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from ..catalog import Catalog
from ..encoder import TextEncoder
from ..errors import ConfigError
from .candidates import CFParams, cf_scores, grid, interaction_matrix, popularity_scores, top_k
from .data import EvalData
from .embedding_cache import CachedEncoder
from .metrics import evaluate
from .rerankers import bm25, rerank
from .split import LooSplit, leave_one_out, ordered_interactions, training_reviews
from .tuning import tune_vector_rerankers
from .vectors import (
    PersonaVectors,
    build_personas,
    mean_review_vectors,
    persona_vectors,
    review_vectors,
    training_catalog,
)

log = logging.getLogger(__name__)
FULL_CATALOG = "none"


@dataclass(frozen=True)
class LooSettings:
    generator: str = "extractive"
    seed: int = 0
    min_rating: float = 3.0
    candidates: int = 20
    ks: tuple[int, ...] = (5, 10, 20)
    cf_kinds: tuple[str, ...] = ("bpr", "als")
    gammas: tuple[float, ...] = (0.5, 0.65, 0.8, 1.0)
    last_ns: tuple[int, ...] = (1, 3, 10, 30)
    personas_per_item: tuple[int, ...] = (1, 3, 7)
    fusion_weights: tuple[float, ...] = tuple(round(w, 2) for w in np.linspace(0, 1, 11))
    tune_metric: str = "NDCG@10"

    def __post_init__(self) -> None:
        if self.tune_metric not in {f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in self.ks}:
            raise ConfigError(f"tune metric {self.tune_metric!r} is not one of the reported metrics")
        if self.candidates < max(self.ks):
            raise ConfigError(f"{self.candidates} candidates cannot be cut at k={max(self.ks)}")


@dataclass(frozen=True)
class Fold:
    """One split of the cases, as item indices: histories, targets, and the CF training matrix."""

    name: str
    users: list[str]
    histories: list[list[int]]
    targets: list[str]
    train: csr_matrix  # the evaluated users' histories first, then every other user's interactions


@dataclass(frozen=True)
class Row:
    split: str
    candidates: str
    reranker: str
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"task": "loo", "split": self.split, "candidates": self.candidates, "reranker": self.reranker,
                **self.metrics, "params": self.params}


@dataclass(frozen=True)
class LooReport:
    config: dict[str, Any]
    rows: list[Row]
    summary: dict[str, Any]


@dataclass
class Representations:
    item_ids: list[str]
    personas: PersonaVectors
    reviews: np.ndarray  # (items, dim) mean review embeddings
    item_texts: list[str]
    user_texts: dict[str, str]


def make_folds(split: LooSplit, data: EvalData, position: dict[str, int]) -> list[Fold]:
    evaluated = {case.user_id for case in split.test}
    others = [[position[i.item_id] for i in ordered_interactions(history) if i.item_id in position]
              for user, history in sorted(data.interactions.items()) if user not in evaluated]
    folds = []
    for name, cases in split.case_sets().items():
        histories = [[position[i] for i in case.history if i in position] for case in cases]
        folds.append(Fold(name, [c.user_id for c in cases], histories, [c.target for c in cases],
                          interaction_matrix(histories + others, len(position))))
    return folds


def represent(catalog: Catalog, settings: LooSettings, encoder: TextEncoder, work: Path,
              progress: Callable[[Iterable], Iterable]) -> tuple[Representations, dict[str, Any]]:
    cache = CachedEncoder(encoder, work / "vectors.sqlite")
    log.info("embedding %d training reviews", sum(len(r) for r in catalog.reviews.values()))
    known = review_vectors(catalog, cache)
    log.info("generating personas (%s) for %d items", settings.generator, len(catalog.items))
    records = build_personas(catalog, settings.generator, cache, work / f"personas-{settings.generator}.jsonl",
                             seed=settings.seed, progress=progress)
    user_reviews: dict[str, list] = defaultdict(list)
    for reviews in catalog.reviews.values():
        for review in reviews:
            if review.user_id is not None:
                user_reviews[review.user_id].append(review)
    item_texts = [" ".join([item.title, item.description or "", *(r.text for r in catalog.reviews[item.item_id])])
                  for item in catalog.items.values()]
    reps = Representations(
        item_ids=list(catalog.items),
        personas=persona_vectors(records, cache),
        reviews=mean_review_vectors(catalog, known),
        item_texts=item_texts,
        user_texts={u: " ".join(r.text for r in sorted(rs, key=lambda r: (r.timestamp is None, r.timestamp, r.review_id)))
                    for u, rs in user_reviews.items()},
    )
    generator_info = next(iter(records.values())).generator.model_dump(mode="json") if records else {}
    return reps, generator_info


class Evaluator:
    """Turns index orders into metrics for one fold."""

    def __init__(self, fold: Fold, item_ids: list[str], ks: tuple[int, ...]):
        self.relevant = [{t} for t in fold.targets]
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.ks = ks

    def __call__(self, order: np.ndarray) -> dict[str, float]:
        metrics = evaluate([list(row) for row in self.item_ids[order]], self.relevant, self.ks)
        return {name: value for name, value in metrics.items() if not name.startswith("Recall")}  # = HR here


def run_loo(data: EvalData, settings: LooSettings, encoder: TextEncoder, work: Path,
            progress: Callable[[Iterable], Iterable] = lambda it: it) -> LooReport:
    split = leave_one_out(data.interactions, settings.min_rating)
    if not split.test:
        raise ConfigError(f"no user has enough interactions for leave-one-out (skipped: {split.skipped})")
    train_reviews = training_reviews(data.reviews, split.held_out)
    catalog = training_catalog(data.items, train_reviews)
    reps, generator_info = represent(catalog, settings, encoder, work, progress)
    position = {item_id: i for i, item_id in enumerate(reps.item_ids)}
    val, test = make_folds(split, data, position)
    evaluators = {f.name: Evaluator(f, reps.item_ids, settings.ks) for f in (val, test)}

    log.info("candidate generators")
    generator_scores, cf_chosen = generate(val, test, settings, evaluators)
    candidates = {split_name: {name: top_k(scores, fold.histories, settings.candidates)
                               for name, scores in generator_scores[split_name].items()}
                  for split_name, fold in (("validation", val), ("test", test))}
    best_cf = max(cf_chosen, key=lambda kind: cf_chosen[kind][1])
    rows: list[Row] = []
    for split_name in ("validation", "test"):
        ev = evaluators[split_name]
        for name, cands in candidates[split_name].items():
            rows.append(Row(split_name, name, "none", ev(cands), cf_chosen[name][0] if name in cf_chosen else {}))
            rows.append(Row(split_name, name, "cf", ev(rerank(generator_scores[split_name][best_cf], cands)),
                            {"model": best_cf}))

    log.info("BM25")
    for split_name, fold in (("validation", val), ("test", test)):
        scores = bm25([reps.user_texts.get(u, "") for u in fold.users], reps.item_texts)
        for name, cands in candidates[split_name].items():
            rows.append(Row(split_name, name, "bm25", evaluators[split_name](rerank(scores, cands))))
        rows.append(Row(split_name, FULL_CATALOG, "bm25",
                        evaluators[split_name](top_k(scores, fold.histories, settings.candidates))))

    log.info("persona and single-vector rerankers")
    rows += tune_vector_rerankers(val, test, reps, candidates, settings, evaluators)
    config = make_config(settings, generator_info, encoder, split, data, catalog, reps, train_reviews, best_cf,
                         cf_chosen)
    return LooReport(config, rows, headline(rows, settings.tune_metric, list(candidates["validation"])))


def generate(val: Fold, test: Fold, settings: LooSettings, evaluators: dict[str, Evaluator]
             ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, tuple[dict[str, Any], float]]]:
    """Score matrices of every generator on both folds; CF tuned on validation, refitted on the test fold."""
    scores: dict[str, dict[str, np.ndarray]] = {
        "validation": {"popularity": popularity_scores(val.train, len(val.users))},
        "test": {"popularity": popularity_scores(test.train, len(test.users))},
    }
    chosen: dict[str, tuple[dict[str, Any], float]] = {}
    for kind in settings.cf_kinds:
        best, best_params, best_scores = -1.0, None, None
        for params in grid(kind):
            candidate_scores = cf_scores(params, val.train, len(val.users), settings.seed)
            metric = evaluators["validation"](top_k(candidate_scores, val.histories, settings.candidates))
            log.info("validation %s %s = %.4f", params.label(), settings.tune_metric, metric[settings.tune_metric])
            if metric[settings.tune_metric] > best:
                best, best_params, best_scores = metric[settings.tune_metric], params, candidate_scores
        assert best_params is not None
        chosen[kind] = (best_params.params, best)
        scores["validation"][kind] = best_scores
        scores["test"][kind] = cf_scores(CFParams(kind, best_params.params), test.train, len(test.users), settings.seed)
    return scores, chosen


def make_config(settings: LooSettings, generator_info: dict[str, Any], encoder: TextEncoder, split: LooSplit,
                data: EvalData, catalog: Catalog, reps: Representations, train_reviews: list, best_cf: str,
                cf_chosen: dict[str, tuple[dict[str, Any], float]]) -> dict[str, Any]:
    return {
        "task": "loo",
        "persona_generator": generator_info,
        "encoder_model": encoder.model_name,
        "seeds": {"generator": settings.seed, "cf": settings.seed},
        "min_rating": settings.min_rating,
        "candidates_per_user": settings.candidates,
        "tune_metric": settings.tune_metric + " on validation",
        "cf_params": {kind: params for kind, (params, _) in cf_chosen.items()},
        "cf_reranker_model": best_cf,
        "grids": {"N": list(settings.last_ns), "gamma": list(settings.gammas),
                  "personas_per_item": list(settings.personas_per_item),
                  "fusion_weight": list(settings.fusion_weights)},
        "counts": {
            "users_evaluated": len(split.test),
            "users_skipped": split.skipped,
            "items": len(data.items),
            "items_with_training_reviews": len(catalog.items),
            "reviews": len(data.reviews),
            "training_reviews": len(train_reviews),
            "reviews_excluded_from_personas": len(data.reviews) - len(train_reviews),
            "personas": int(reps.personas.offsets[-1]),
            "test_targets_without_training_reviews": sum(c.target not in catalog.items for c in split.test),
        },
    }


def find(rows: list[Row], split: str, candidates: str, reranker: str) -> Row:
    return next(r for r in rows if (r.split, r.candidates, r.reranker) == (split, candidates, reranker))


def compare(base: Row, other: Row, metrics: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    return {m: {"base": base.metrics[m], "other": other.metrics[m], "difference": other.metrics[m] - base.metrics[m],
                "relative": (other.metrics[m] - base.metrics[m]) / base.metrics[m] if base.metrics[m] else None}
            for m in metrics}


def headline(rows: list[Row], metric: str, generators: list[str]) -> dict[str, Any]:
    """The lift of the best persona reranker over the strongest generator, both chosen on validation, on test."""
    strongest = max(generators, key=lambda g: find(rows, "validation", g, "none").metrics[metric])
    best = max(("persona", "fusion"), key=lambda r: find(rows, "validation", strongest, r).metrics[metric])
    shown = ("HR@10", "NDCG@10", "MRR@10")
    return {
        "strongest_generator": strongest,
        "best_persona_reranker": best,
        "persona_lift_over_generator": compare(find(rows, "test", strongest, "none"),
                                               find(rows, "test", strongest, best), shown),
        "persona_vs_single_vector": compare(find(rows, "test", strongest, "single"),
                                            find(rows, "test", strongest, "persona"), shown),
        "full_catalog_persona_vs_single_vector": compare(find(rows, "test", FULL_CATALOG, "single"),
                                                         find(rows, "test", FULL_CATALOG, "persona"), shown),
    }
