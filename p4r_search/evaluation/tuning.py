"""Grid search of the vector rerankers on validation, for every variant; test measured once at each choice.

Rerankers: `persona` (max-sim: an item scores as its best persona), `single` (one vector per item: the mean
of its training reviews), `fusion` (the generator's order fused with the persona score, fusion.py's
candidate fusion), `fusion-score` (the generator's min-max score in place of its order) and
`fusion-evidence` (rank fusion whose persona weight shrinks with the item's CF evidence, its training
interactions: w · h / (h + n), h tuned too). For every variant (profile source × encoder × persona vector kind) each reranker picks
N and gamma (and the fusion weight) on validation. The main rows take, per candidate list, the variant
that is best on validation; `single` there is measured at the chosen `persona` row's variant, so the
two differ only in the item side. The ablation rows give every variant on the
strongest generator's candidates and on the full catalog.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidates import top_k
from .folds import Evaluator
from .rerankers import evidence_fused_order, fused_order, max_sim, rerank, score_fused_order
from .settings import LooSettings, Row
from .variants import Embedded, HistoryTable, Variant

FULL_CATALOG = "none"
FUSIONS = ("fusion", "fusion-score", "fusion-evidence")
VECTOR_RERANKERS = ("persona", "single", *FUSIONS)
PERSONA_RERANKERS = ("persona", *FUSIONS)  # what the headline chooses among


@dataclass(frozen=True)
class SplitLists:
    """One split's candidate lists, with what the fusions need: each generator's scores and each item's
    CF evidence (its interactions in the split's training matrix)."""

    candidates: Mapping[str, np.ndarray]
    generator_scores: Mapping[str, np.ndarray]
    evidence: np.ndarray
    histories: list


@dataclass(frozen=True)
class Choice:
    value: float  # the validation metric at this setting
    variant: Variant
    params: dict[str, Any]  # N, gamma, and weight for fusion


class Scorer:
    """Score matrices of one fold by (variant, reranker kind, N, gamma). Only the latest few are kept: a
    matrix is users × items, and a grid of them over a large catalog would not fit in memory."""

    KEEP = 4

    def __init__(self, histories: HistoryTable, embedded: Mapping[Variant, Embedded]):
        self.histories, self.embedded = histories, embedded
        self.cache: dict[tuple, np.ndarray] = {}

    def __call__(self, variant: Variant, kind: str, last_n: int, gamma: float) -> np.ndarray:
        key = (variant, kind, last_n, gamma)
        if key not in self.cache:
            e = self.embedded[variant]
            items = e.single if kind == "single" else e.items
            profiles = self.histories.profiles(items, e.texts, variant.profile, last_n, gamma)
            self.cache[key] = (profiles @ e.single.T).astype(np.float32) if kind == "single" \
                else max_sim(profiles, e.personas)
            while len(self.cache) > self.KEEP:
                self.cache.pop(next(iter(self.cache)))
        return self.cache[key]


def order_of(reranker: str, name: str, scores: np.ndarray, lists: SplitLists, k: int,
             params: Mapping[str, Any]) -> np.ndarray:
    if name == FULL_CATALOG:
        return top_k(scores, lists.histories, k)
    candidates = lists.candidates[name]
    if reranker == "fusion":
        return fused_order(candidates, scores, params["weight"])
    if reranker == "fusion-score":
        return score_fused_order(candidates, scores, lists.generator_scores[name], params["weight"])
    if reranker == "fusion-evidence":
        return evidence_fused_order(candidates, scores, lists.evidence, params["weight"], params["half"])
    return rerank(scores, candidates)


def reranker_points(reranker: str, settings: LooSettings) -> Iterator[dict[str, Any]]:
    """The extra parameters each reranker tunes beyond N and gamma."""
    if reranker in ("fusion", "fusion-score"):
        yield from ({"weight": w} for w in settings.fusion_weights)
    elif reranker == "fusion-evidence":
        yield from ({"weight": w, "half": h} for h in settings.evidence_halves for w in settings.fusion_weights
                    if w > 0)
    else:
        yield {}


def search(scorer: Scorer, evaluator: Evaluator, lists: SplitLists, settings: LooSettings
           ) -> dict[tuple[Variant, str, str], Choice]:
    """The best validation setting of every (variant, candidate list, reranker)."""
    names = [*lists.candidates, FULL_CATALOG]
    best: dict[tuple[Variant, str, str], Choice] = {}
    for variant in scorer.embedded:
        for last_n, gamma in itertools.product(settings.last_ns, settings.gammas):
            for reranker in VECTOR_RERANKERS:
                scores = scorer(variant, "single" if reranker == "single" else "persona", last_n, gamma)
                for name in (names[:-1] if reranker in FUSIONS else names):
                    for extra in reranker_points(reranker, settings):
                        params = {"N": last_n, "gamma": gamma, **extra}
                        order = order_of(reranker, name, scores, lists, settings.candidates, params)
                        value = evaluator.value(order, settings.tune_metric)
                        key = (variant, name, reranker)
                        if key not in best or value > best[key].value:
                            best[key] = Choice(value, variant, params)
    return best


def main_choices(best: Mapping[tuple[Variant, str, str], Choice], names: list[str]) -> dict[tuple[str, str], Choice]:
    """Per (candidate list, reranker): the best variant on validation (ties go to the first in sorted order);
    `single` at the persona row's variant: the same encoder (a trained head belongs to one variant) and
    profile source, so that only the item side differs."""
    chosen: dict[tuple[str, str], Choice] = {}
    for name in [*names, FULL_CATALOG]:
        for reranker in PERSONA_RERANKERS:
            options = [c for (v, n, r), c in sorted(best.items()) if (n, r) == (name, reranker)]
            if options:
                chosen[(name, reranker)] = max(options, key=lambda c: c.value)
        chosen[(name, "single")] = best[(chosen[(name, "persona")].variant, name, "single")]
    return chosen


def measure(choice: Choice, reranker: str, name: str, scorers: Mapping[str, Scorer],
            lists: Mapping[str, SplitLists], k: int) -> dict[str, np.ndarray]:
    """The validation and test orders at a choice."""
    out = {}
    for split in ("validation", "test"):
        scores = scorers[split](choice.variant, "single" if reranker == "single" else "persona",
                                choice.params["N"], choice.params["gamma"])
        out[split] = order_of(reranker, name, scores, lists[split], k, choice.params)
    return out


def tune_vector_rerankers(scorers: Mapping[str, Scorer], evaluators: Mapping[str, Evaluator],
                          lists: Mapping[str, SplitLists], settings: LooSettings, strongest: str
                          ) -> tuple[list[Row], list[dict[str, Any]], dict]:
    """Main rows, ablation rows (every variant, on the strongest generator's candidates and the full catalog)
    and the orders at each main choice (for the headline's bootstrap)."""
    best = search(scorers["validation"], evaluators["validation"], lists["validation"], settings)
    names = list(lists["validation"].candidates)
    orders: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    rows: list[Row] = []
    for (name, reranker), choice in main_choices(best, names).items():
        orders[(name, reranker)] = measure(choice, reranker, name, scorers, lists, settings.candidates)
        for split in ("validation", "test"):
            metrics = evaluators[split](orders[(name, reranker)][split])
            rows.append(Row(split, name, reranker, metrics, {**choice.variant.as_dict(), **choice.params}))
    ablation = []
    for (variant, name, reranker), choice in sorted(best.items()):
        if name not in (strongest, FULL_CATALOG):
            continue
        found = measure(choice, reranker, name, scorers, lists, settings.candidates)
        for split in ("validation", "test"):
            ablation.append({"split": split, "candidates": name, "reranker": reranker, **variant.as_dict(),
                             **evaluators[split](found[split]), "params": choice.params})
    return rows, ablation, orders
