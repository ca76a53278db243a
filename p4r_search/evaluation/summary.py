"""The headline of a leave-one-out run (with bootstrap intervals) and its config block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .bootstrap import paired_difference
from .folds import Evaluator
from .settings import LooSettings, Row
from .tuning import FULL_CATALOG, PERSONA_RERANKERS

POOL = "pool"  # the learned reranker's candidates: the union of every generator's top k (learned.py)
LEARNED_WITH_PERSONAS = ("ltr",)
SHOWN = ("HR@10", "NDCG@10", "MRR@10")


def find(rows: list[Row], split: str, candidates: str, reranker: str) -> Row:
    return next(r for r in rows if (r.split, r.candidates, r.reranker) == (split, candidates, reranker))


def compare(base: Row, other: Row, metrics: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    return {m: {"base": base.metrics[m], "other": other.metrics[m], "difference": other.metrics[m] - base.metrics[m],
                "relative": (other.metrics[m] - base.metrics[m]) / base.metrics[m] if base.metrics[m] else None}
            for m in metrics}


def lift_interval(base: np.ndarray, other: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """The paired bootstrap 95 % interval of the mean difference, and of the relative lift over the base."""
    found = paired_difference(base, other, resamples=resamples, seed=seed)
    low, high = found.ci95
    relative = [x / found.base if found.base else None for x in (low, high)]
    return {"difference": found.difference, "ci95": [low, high], "relative_ci95": relative, "resamples": resamples,
            "cases": len(base)}


def contenders(rows: list[Row], strongest: str) -> list[tuple[str, str]]:
    """(candidates, reranker) of every persona reranker the headline may choose: those over the strongest
    generator's list, and the learned reranker with persona features over the pool."""
    present = {(r.candidates, r.reranker) for r in rows if r.split == "validation"}
    return [c for c in [*((strongest, r) for r in PERSONA_RERANKERS), *((POOL, r) for r in LEARNED_WITH_PERSONAS)]
            if c in present]


def headline(rows: list[Row], settings: LooSettings, strongest: str, orders: Mapping[tuple[str, str], dict],
             evaluators: Mapping[str, Evaluator], candidates: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """The lift of the best persona reranker over the strongest generator, both chosen on validation, on test;
    and every lever's own test lift with its interval (none of those is chosen on test)."""
    metric = settings.tune_metric
    options = contenders(rows, strongest)
    best_list, best = max(options, key=lambda c: find(rows, "validation", *c).metrics[metric])
    chosen = find(rows, "test", best_list, best)
    per_case = lambda order: evaluators["test"].per_case(order)[metric]
    generator_values = per_case(candidates["test"][strongest])
    interval = lambda base, other: lift_interval(base, other, settings.bootstrap_resamples, settings.seed)
    base_row = find(rows, "test", strongest, "none")
    levers = {f"{name}/{reranker}": {"validation": find(rows, "validation", name, reranker).metrics[metric],
                                     "test": find(rows, "test", name, reranker).metrics[metric],
                                     "lift_ci95": interval(generator_values, per_case(orders[(name, reranker)]["test"]))}
              for name, reranker in [*options, *((n, r) for n, r in orders if n == POOL and (n, r) not in options)]}
    out = {
        "strongest_generator": strongest,
        "generators_validation": {r.candidates: r.metrics[metric] for r in rows
                                  if r.split == "validation" and r.reranker == "none"},
        "best_persona_reranker": best,
        "best_persona_candidates": best_list,
        "best_persona_setting": chosen.params,
        "persona_lift_over_generator": compare(base_row, chosen, SHOWN),
        "persona_lift_ci95": {metric: interval(generator_values, per_case(orders[(best_list, best)]["test"]))},
        "levers": levers,
        "persona_vs_single_vector": compare(find(rows, "test", strongest, "single"),
                                            find(rows, "test", strongest, "persona"), SHOWN),
        "persona_vs_single_vector_ci95": {metric: interval(per_case(orders[(strongest, "single")]["test"]),
                                                           per_case(orders[(strongest, "persona")]["test"]))},
        "full_catalog_persona_vs_single_vector": compare(find(rows, "test", FULL_CATALOG, "single"),
                                                         find(rows, "test", FULL_CATALOG, "persona"), SHOWN),
        "start_with": start_with(chosen, best, settings.evidence_prior),
    }
    if (POOL, "ltr-no-persona") in orders:
        out["persona_features_in_ltr_ci95"] = {metric: interval(per_case(orders[(POOL, "ltr-no-persona")]["test"]),
                                                                per_case(orders[(POOL, "ltr")]["test"]))}
    return out


def start_with(row: Row, reranker: str, prior: float) -> dict[str, Any]:
    """The settings a user should start from: the product's names for the chosen variant."""
    p = row.params
    if reranker.startswith("ltr"):
        return {"reranker": "learned (p4r eval loo's LightGBM model over the pool)", "features": p["features"],
                "persona_setting": p["persona_setting"]}
    out = {"profile_source": p["profile"], "persona_vector": p["persona_vector"], "encoder": p["encoder"],
           "last_n": p["N"], "gamma": p["gamma"]}
    if p["persona_vector"] != "text":
        out["evidence_prior"] = prior
    if reranker.startswith("fusion"):
        out["candidate_weight"] = p["weight"]
        out["fusion"] = reranker
    if "half" in p:
        out["evidence_half"] = p["half"]
    return out


def make_config(settings: LooSettings, generator_info: dict[str, Any], encoder, split, data, catalog, reps,
                train_reviews: list, best_cf: str, strongest: str, tuned: Mapping[str, Any],
                heads: Mapping[tuple[str, str], Any], seconds: Mapping[str, float]) -> dict[str, Any]:
    return {
        "task": "loo",
        "persona_generator": generator_info,
        "encoder_model": encoder.model_name,
        "seeds": {"generator": settings.seed, "cf": settings.seed, "training": settings.head.seed},
        "min_rating": settings.min_rating,
        "evidence_prior": settings.evidence_prior,
        "candidates_per_user": settings.candidates,
        "tune_metric": settings.tune_metric + " on validation",
        "generators": list(tuned),
        "generator_params": {kind: found.spec.params for kind, found in tuned.items()},
        "cf_reranker_model": best_cf,
        "grids": {"N": list(settings.last_ns), "gamma": list(settings.gammas),
                  "fusion_weight": list(settings.fusion_weights), "evidence_half": list(settings.evidence_halves),
                  "profile_source": list(settings.profile_sources),
                  "persona_vector": list(settings.persona_vectors),
                  "encoder": ["untrained", "trained"] if settings.train else ["untrained"]},
        "training": {"head": settings.head.as_dict(),
                     "hard_negatives": settings.hard_negative_source(strongest),
                     "profile_for_anchors": {"N": 10, "gamma": 0.65},
                     "heads": {f"{source}/{kind}": {"examples": h.examples, "steps": h.steps,
                                                    "losses": [round(x, 4) for x in h.losses]}
                               for (source, kind), h in heads.items()}} if settings.train else None,
        "seconds": dict(seconds),
        "counts": {
            "users_evaluated": len(split.test),
            "users_skipped": split.skipped,
            "items": len(data.items),
            "items_with_training_reviews": len(catalog.items),
            "reviews": len(data.reviews),
            "training_reviews": len(train_reviews),
            "reviews_excluded_from_personas": len(data.reviews) - len(train_reviews),
            "personas": sum(len(r.personas) for r in reps.records.values()),
            "test_targets_without_training_reviews": sum(c.target not in catalog.items for c in split.test),
        },
    }
