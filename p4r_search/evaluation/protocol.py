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
from scipy.sparse import csr_matrix

from ..catalog import Catalog
from ..encoder import TextEncoder
from ..errors import ConfigError
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from ..profile import PROFILE_SOURCES, ProfileConfig
from ..training import HeadSettings, TrainedHead
from .candidates import CFParams, cf_scores, grid, interaction_matrix, popularity_scores, top_k
from .data import EvalData
from .embedding_cache import CachedEncoder
from .encoders import train_heads, training_inputs
from .rerankers import bm25, rerank
from .split import LooSplit, leave_one_out, ordered_interactions, training_reviews
from .summary import headline, make_config
from .tuning import FULL_CATALOG, Scorer, tune_vector_rerankers
from .variants import TRAINED, UNTRAINED, Embedded, HistoryTable, TextTable, Variant, embed_variant
from .vectors import build_personas, training_catalog

log = logging.getLogger(__name__)


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
    fusion_weights: tuple[float, ...] = tuple(round(w, 2) for w in np.linspace(0, 1, 11))
    profile_sources: tuple[str, ...] = PROFILE_SOURCES
    persona_vectors: tuple[str, ...] = PERSONA_VECTOR_KINDS
    train: bool = True
    head: HeadSettings = field(default_factory=HeadSettings)
    evidence_prior: float = DEFAULT_EVIDENCE_PRIOR
    tune_metric: str = "NDCG@10"
    bootstrap_resamples: int = 2000

    def __post_init__(self) -> None:
        if self.tune_metric not in {f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in self.ks}:
            raise ConfigError(f"tune metric {self.tune_metric!r} is not one of the reported metrics")
        if self.candidates < max(self.ks):
            raise ConfigError(f"{self.candidates} candidates cannot be cut at k={max(self.ks)}")
        for source in self.profile_sources:
            ProfileConfig(source=source)

    def variants(self) -> list[Variant]:
        encoders = (UNTRAINED, TRAINED) if self.train else (UNTRAINED,)
        return [Variant(p, e, k) for p in self.profile_sources for e in encoders for k in self.persona_vectors]


@dataclass(frozen=True)
class Fold:
    """One split of the cases, as item indices: histories, targets, and the CF training matrix, whose rows are
    the evaluated users' histories first, then every other user's interactions (`other_*`, oldest first)."""

    name: str
    users: list[str]
    histories: list[list[int]]
    targets: list[str]
    train: csr_matrix
    other_users: list[str] = field(default_factory=list)
    other_histories: list[list[int]] = field(default_factory=list)


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
    ablation: list[dict[str, Any]] = field(default_factory=list)
    chosen_head: TrainedHead | None = None  # the trained head of the headline's variant, if it is trained


@dataclass
class Representations:
    item_ids: list[str]
    records: dict
    table: TextTable
    item_texts: list[str]
    user_texts: dict[str, str]
    review_row: dict[tuple[str, str], int]  # (user, item) → text row of the user's training review


def make_folds(split: LooSplit, data: EvalData, position: dict[str, int]) -> list[Fold]:
    evaluated = {case.user_id for case in split.test}
    other_users = [user for user in sorted(data.interactions) if user not in evaluated]
    others = [[position[i.item_id] for i in ordered_interactions(data.interactions[user]) if i.item_id in position]
              for user in other_users]
    folds = []
    for name, cases in split.case_sets().items():
        histories = [[position[i] for i in case.history if i in position] for case in cases]
        folds.append(Fold(name, [c.user_id for c in cases], histories, [c.target for c in cases],
                          interaction_matrix(histories + others, len(position)), other_users, others))
    return folds


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


class Evaluator:
    """Turns index orders into metrics for one fold (one relevant item per case; HR = Recall here)."""

    def __init__(self, fold: Fold, item_ids: list[str], ks: tuple[int, ...]):
        position = {item_id: i for i, item_id in enumerate(item_ids)}
        self.targets = np.array([position.get(t, -1) for t in fold.targets], dtype=np.int64)
        self.ks = ks

    def per_case(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric, one value per case: the metrics module's definitions for a single relevant item."""
        hits = np.asarray(order) == self.targets[:, None]
        found = hits.any(axis=1)
        rank = np.where(found, hits.argmax(axis=1) + 1, np.iinfo(np.int64).max)
        out = {}
        for name, value in (("HR", lambda r: np.ones_like(r, dtype=np.float64)), ("MRR", lambda r: 1.0 / r),
                            ("NDCG", lambda r: 1.0 / np.log2(r + 1.0))):
            for k in self.ks:
                inside = rank <= k
                out[f"{name}@{k}"] = np.where(inside, value(np.where(inside, rank, 1)), 0.0)
        return out

    def __call__(self, order: np.ndarray) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_case(order).items()}


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

    log.info("candidate generators")
    generator_scores, cf_chosen = generate(val, test, settings, evaluators)
    candidates = {name: {g: top_k(scores, folds[name].histories, settings.candidates)
                         for g, scores in generator_scores[name].items()} for name in folds}
    best_cf = max(cf_chosen, key=lambda kind: cf_chosen[kind][1])
    strongest = max(candidates["validation"],
                    key=lambda g: evaluators["validation"](candidates["validation"][g])[settings.tune_metric])
    rows = generator_rows(candidates, generator_scores, cf_chosen, best_cf, evaluators)
    clock.lap("candidate generators")
    rows += bm25_rows(reps, folds, candidates, evaluators, settings)
    clock.lap("bm25")

    heads: dict[tuple[str, str], TrainedHead] = {}
    if settings.train:
        log.info("training encoder heads on the training split")
        inputs = training_inputs(val, reps.item_ids, all_rows_scores(strongest, val, settings, cf_chosen),
                                 [r for rs in catalog.reviews.values() for r in rs], reps.records)
        heads = train_heads(inputs, reps.table, settings.profile_sources, settings.persona_vectors, ProfileConfig(),
                            settings.head, settings.evidence_prior)
        clock.lap("training")
    log.info("persona and single-vector rerankers over %d variants", len(settings.variants()))
    embedded: dict[Variant, Embedded] = {}
    for variant in settings.variants():
        head = heads.get((variant.profile, variant.persona_vector)) if variant.encoder == TRAINED else None
        embedded[variant] = embed_variant(variant.persona_vector, catalog, reps.records, reps.table,
                                          head.apply if head else None, settings.evidence_prior)
    scorers = {name: Scorer(HistoryTable.build(f.users, f.histories, reps.item_ids, reps.review_row), embedded)
               for name, f in folds.items()}
    histories = {name: f.histories for name, f in folds.items()}
    vector_rows, ablation, orders = tune_vector_rerankers(scorers, evaluators, candidates, histories, settings,
                                                          strongest)
    rows += vector_rows
    clock.lap("vector rerankers")
    summary = headline(rows, settings, strongest, orders, evaluators, candidates)
    chosen = summary["best_persona_setting"]
    chosen_head = heads.get((chosen["profile"], chosen["persona_vector"])) if chosen["encoder"] == TRAINED else None
    config = make_config(settings, generator_info, encoder, split, data, catalog, reps, train_reviews, best_cf,
                         cf_chosen, heads, clock.laps)
    return LooReport(config, rows, summary, ablation, chosen_head)


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


def generator_rows(candidates, generator_scores, cf_chosen, best_cf, evaluators) -> list[Row]:
    rows = []
    for split_name, ev in evaluators.items():
        for name, cands in candidates[split_name].items():
            rows.append(Row(split_name, name, "none", ev(cands), cf_chosen[name][0] if name in cf_chosen else {}))
            rows.append(Row(split_name, name, "cf", ev(rerank(generator_scores[split_name][best_cf], cands)),
                            {"model": best_cf}))
    return rows


def bm25_rows(reps: Representations, folds, candidates, evaluators, settings: LooSettings) -> list[Row]:
    log.info("BM25")
    rows = []
    for split_name, fold in folds.items():
        scores = bm25([reps.user_texts.get(u, "") for u in fold.users], reps.item_texts)
        for name, cands in candidates[split_name].items():
            rows.append(Row(split_name, name, "bm25", evaluators[split_name](rerank(scores, cands))))
        rows.append(Row(split_name, FULL_CATALOG, "bm25",
                        evaluators[split_name](top_k(scores, fold.histories, settings.candidates))))
    return rows


def all_rows_scores(generator: str, fold: Fold, settings: LooSettings,
                    cf_chosen: dict[str, tuple[dict[str, Any], float]]) -> np.ndarray:
    """The generator's scores for every row of the fold's training matrix (hard negatives for training)."""
    rows = fold.train.shape[0]
    if generator == "popularity":
        return popularity_scores(fold.train, rows)
    return cf_scores(CFParams(generator, cf_chosen[generator][0]), fold.train, rows, settings.seed)


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
