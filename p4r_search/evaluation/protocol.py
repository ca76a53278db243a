"""The leave-one-out protocol (Persona4Rec, issue #5): split, represent, generate candidates, train, rerank, tune.

Everything that is tuned (the CF models' hyperparameters, the variant: profile source × encoder × persona
vector kind, N, gamma, the fusion weight) is chosen on the validation item by `LooSettings.tune_metric`;
test numbers are then measured once, at the chosen setting. Grid ties go to the earlier grid point.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..encoder import TextEncoder
from ..errors import ConfigError
from ..profile import ProfileConfig
from ..training import TrainedHead
from .candidates import top_k
from .data import EvalData
from .embedding_cache import CachedEncoder
from .encoders import train_heads, training_inputs
from .folds import Evaluator, Fold, make_folds
from .generators import Tuned, scores, tune
from .learned import item_constants, learned_rows
from .ltr import LearnedRanker
from .rerankers import bm25, rerank
from .segments import segment_table
from .settings import LooSettings, Row
from .split import leave_one_out, training_reviews
from .summary import headline, make_config
from .tuning import FULL_CATALOG, Scorer, SplitLists, tune_vector_rerankers
from .variants import TRAINED, Embedded, HistoryTable, TextTable, Variant, embed_variant
from .vectors import build_personas, training_catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LooReport:
    config: dict[str, Any]
    rows: list[Row]
    summary: dict[str, Any]
    ablation: list[dict[str, Any]] = field(default_factory=list)
    chosen_head: TrainedHead | None = None  # the trained head of the headline's variant, if it is trained
    learned_ranker: LearnedRanker | None = None  # the learned reranker with every feature, fitted on validation


@dataclass
class Representations:
    item_ids: list[str]
    records: dict
    table: TextTable
    item_texts: list[str]
    user_texts: dict[str, str]
    review_row: dict[tuple[str, str], int]  # (user, item) → text row of the user's training review


def represent(catalog: Catalog, settings: LooSettings, cache: CachedEncoder, work: Path,
              progress: Callable[[Iterable], Iterable]) -> tuple[Representations, dict[str, Any]]:
    reviews = [r for rs in catalog.reviews.values() for r in rs]
    log.info("embedding %d training reviews", len(reviews))
    cache.encode(sorted({r.text for r in reviews}))  # one bulk call; the generator then finds them cached
    log.info("generating personas (%s) for %d items", settings.generator, len(catalog.items))
    records = build_personas(catalog, settings.generator, cache, work / f"personas-{settings.generator}.jsonl",
                             seed=settings.seed, progress=progress)
    persona_texts = [p.embedding_text for record in records.values() for p in record.personas]
    table = TextTable.build([*(r.text for r in reviews), *persona_texts], cache.encode)
    user_reviews: dict[str, list] = defaultdict(list)
    for review in reviews:
        if review.user_id is not None:
            user_reviews[review.user_id].append(review)
    item_texts = [" ".join([item.title, item.description or "", *(r.text for r in catalog.reviews[item.item_id])])
                  for item in catalog.items.values()]
    reps = Representations(
        item_ids=list(catalog.items),
        records=records,
        table=table,
        item_texts=item_texts,
        user_texts={u: " ".join(r.text for r in sorted(rs, key=lambda r: (r.timestamp is None, r.timestamp, r.review_id)))
                    for u, rs in user_reviews.items()},
        review_row={(r.user_id, r.item_id): table.rows[r.text] for r in reviews if r.user_id is not None},
    )
    generator_info = next(iter(records.values())).generator.model_dump(mode="json") if records else {}
    return reps, generator_info


def run_loo(data: EvalData, settings: LooSettings, encoder: TextEncoder, work: Path,
            progress: Callable[[Iterable], Iterable] = lambda it: it) -> LooReport:
    clock = Clock()
    split = leave_one_out(data.interactions, settings.min_rating)
    if not split.test:
        raise ConfigError(f"no user has enough interactions for leave-one-out (skipped: {split.skipped})")
    train_reviews = training_reviews(data.reviews, split.held_out)
    catalog = training_catalog(data.items, train_reviews)
    cache = CachedEncoder(encoder, work / "vectors.sqlite")
    reps, generator_info = represent(catalog, settings, cache, work, progress)
    clock.lap("embeddings and personas")
    position = {item_id: i for i, item_id in enumerate(reps.item_ids)}
    val, test = make_folds(split, data, position)
    folds = {"validation": val, "test": test}
    evaluators = {f.name: Evaluator(f, reps.item_ids, settings.ks) for f in (val, test)}

    log.info("candidate generators: %s", ", ".join(settings.generators))
    tuned = generate(val, test, settings, evaluators["validation"], clock)
    lists = {name: split_lists(fold, tuned, name, settings.candidates) for name, fold in folds.items()}
    candidates = {name: dict(found.candidates) for name, found in lists.items()}
    strongest = max(tuned, key=lambda g: tuned[g].validation_metric)
    best_cf = max((g for g in tuned if g != "popularity"), key=lambda g: tuned[g].validation_metric,
                  default=strongest)
    rows = generator_rows(lists, tuned, best_cf, evaluators)
    found_bm25, bm25_matrices = bm25_rows(reps, folds, candidates, evaluators, settings)
    rows += found_bm25
    clock.lap("bm25")

    heads: dict[tuple[str, str], TrainedHead] = {}
    if settings.train:
        source = settings.hard_negative_source(strongest)
        log.info("training encoder heads on the training split (hard negatives: %s's top 20)", source)
        hard = scores(tuned[source].spec, val.training_data(), val.train.shape[0], settings.seed)
        inputs = training_inputs(val, reps.item_ids, hard, [r for rs in catalog.reviews.values() for r in rs],
                                 reps.records)
        heads = train_heads(inputs, reps.table, settings.profile_sources, settings.persona_vectors, ProfileConfig(),
                            settings.head, settings.evidence_prior)
        clock.lap("training")
    log.info("persona and single-vector rerankers over %d variants", len(settings.variants()))
    embedded = embed_variants(settings, catalog, reps, heads)
    scorers = {name: Scorer(HistoryTable.build(f.users, f.histories, reps.item_ids, reps.review_row), embedded)
               for name, f in folds.items()}
    vector_rows, ablation, orders = tune_vector_rerankers(scorers, evaluators, lists, settings, strongest)
    rows += vector_rows
    clock.lap("vector rerankers")
    learned_models: dict[str, Any] = {}
    if settings.learned_reranker:
        log.info("learned reranker (LightGBM LambdaRank) over the pool of every generator's top %d",
                 settings.candidates)
        item_values, supports = item_constants(reps.records, reps.item_ids, catalog.reviews)
        learned, learned_orders, learned_models = learned_rows(rows, lists, scorers, bm25_matrices, item_values,
                                                               supports, evaluators, folds, strongest, settings)
        rows += learned
        orders.update(learned_orders)
        clock.lap("learned reranker")
    summary = headline(rows, settings, strongest, orders, evaluators, candidates)
    summary["segments"] = segment_table(summary, orders, candidates, folds["test"], evaluators["test"], settings)
    chosen = summary["best_persona_setting"]
    chosen_head = heads.get((chosen["profile"], chosen["persona_vector"])) \
        if chosen.get("encoder") == TRAINED else None
    config = make_config(settings, generator_info, encoder, split, data, catalog, reps, train_reviews, best_cf,
                         strongest, tuned, heads, clock.laps)
    config["learned_reranker"] = {name: {k: v for k, v in found.items() if k != "model"}
                                  for name, found in learned_models.items()}
    return LooReport(config, rows, summary, ablation, chosen_head,
                     learned_models.get("ltr", {}).get("model"))


def embed_variants(settings: LooSettings, catalog: Catalog, reps: Representations,
                   heads: dict[tuple[str, str], TrainedHead]) -> dict[Variant, Embedded]:
    embedded: dict[Variant, Embedded] = {}
    for variant in settings.variants():
        head = heads.get((variant.profile, variant.persona_vector)) if variant.encoder == TRAINED else None
        embedded[variant] = embed_variant(variant.persona_vector, catalog, reps.records, reps.table,
                                          head.apply if head else None, settings.evidence_prior)
    return embedded


class Clock:
    """Wall-clock seconds per phase, for the report (how long a default run takes, and where)."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps.pop("total", None)
        self.laps[phase] = round(now - self.last, 1)
        self.laps["total"] = round(now - self.started, 1)  # kept last
        self.last = now


def generator_rows(lists: dict[str, SplitLists], tuned: dict[str, Tuned], best_cf: str,
                   evaluators: dict[str, Evaluator]) -> list[Row]:
    rows = []
    for split_name, ev in evaluators.items():
        found = lists[split_name]
        for name, cands in found.candidates.items():
            rows.append(Row(split_name, name, "none", ev(cands), tuned[name].spec.params))
            rows.append(Row(split_name, name, "cf", ev(rerank(found.generator_scores[best_cf], cands)),
                            {"model": best_cf}))
    return rows


def bm25_rows(reps: Representations, folds, candidates, evaluators, settings: LooSettings
              ) -> tuple[list[Row], dict[str, np.ndarray]]:
    log.info("BM25")
    rows, matrices = [], {}
    for split_name, fold in folds.items():
        scores_ = matrices[split_name] = bm25([reps.user_texts.get(u, "") for u in fold.users], reps.item_texts)
        for name, cands in candidates[split_name].items():
            rows.append(Row(split_name, name, "bm25", evaluators[split_name](rerank(scores_, cands))))
        rows.append(Row(split_name, FULL_CATALOG, "bm25",
                        evaluators[split_name](top_k(scores_, fold.histories, settings.candidates))))
    return rows, matrices


def generate(val: Fold, test: Fold, settings: LooSettings, validation: Evaluator, clock: Clock) -> dict[str, Tuned]:
    """Every generator tuned on validation and refitted on the test fold (one timed phase each)."""
    tuned = {}
    for kind in settings.generators:
        tuned[kind] = tune(kind, val.training_data(), test.training_data(), val.histories,
                           (len(val.users), len(test.users)),
                           lambda order: validation.value(order, settings.tune_metric), settings.candidates,
                           settings.seed)
        clock.lap(f"generator {kind}")
    return tuned


def split_lists(fold: Fold, tuned: dict[str, Tuned], split_name: str, k: int) -> SplitLists:
    generator_scores = {g: getattr(t, split_name) for g, t in tuned.items()}
    return SplitLists({g: top_k(s, fold.histories, k) for g, s in generator_scores.items()}, generator_scores,
                      np.asarray(fold.train.sum(axis=0), dtype=np.float64).ravel(), fold.histories)
