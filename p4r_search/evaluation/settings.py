"""The settings of a leave-one-out run and the row type of its report (shared by the protocol's modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from ..profile import PROFILE_SOURCES, ProfileConfig
from ..training import HeadSettings
from .names import DEFAULT_GENERATORS, GENERATOR_KINDS, STRONGEST
from .variants import TRAINED, UNTRAINED, Variant

# the CF evidence of an item (its training interactions) at which the evidence-aware fusion halves the persona
# weight: w_i = w · h / (h + n_i)
EVIDENCE_HALVES = (1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class LooSettings:
    generator: str = "extractive"
    seed: int = 0
    min_rating: float = 3.0
    candidates: int = 20
    ks: tuple[int, ...] = (5, 10, 20)
    generators: tuple[str, ...] = DEFAULT_GENERATORS
    gammas: tuple[float, ...] = (0.5, 0.65, 0.8, 1.0)
    last_ns: tuple[int, ...] = (1, 3, 10, 30)
    fusion_weights: tuple[float, ...] = tuple(round(w, 2) for w in np.linspace(0, 1, 11))
    evidence_halves: tuple[float, ...] = EVIDENCE_HALVES
    profile_sources: tuple[str, ...] = PROFILE_SOURCES
    persona_vectors: tuple[str, ...] = PERSONA_VECTOR_KINDS
    train: bool = True
    head: HeadSettings = field(default_factory=HeadSettings)
    evidence_prior: float = DEFAULT_EVIDENCE_PRIOR
    tune_metric: str = "NDCG@10"
    bootstrap_resamples: int = 2000
    learned_reranker: bool = True
    hard_negatives: str = STRONGEST  # or the generator whose top candidates are the training negatives

    def __post_init__(self) -> None:
        if self.tune_metric not in {f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in self.ks}:
            raise ConfigError(f"tune metric {self.tune_metric!r} is not one of the reported metrics")
        if self.candidates < max(self.ks):
            raise ConfigError(f"{self.candidates} candidates cannot be cut at k={max(self.ks)}")
        unknown = [g for g in self.generators if g not in GENERATOR_KINDS]
        if unknown or not self.generators:
            raise ConfigError(f"unknown candidate generator(s) {unknown}: choose from {', '.join(GENERATOR_KINDS)}")
        if self.hard_negatives != STRONGEST and self.hard_negatives not in self.generators:
            raise ConfigError(f"hard negatives from {self.hard_negatives!r}: choose {STRONGEST!r} or one of the "
                              f"generators run ({', '.join(self.generators)})")
        for source in self.profile_sources:
            ProfileConfig(source=source)

    def hard_negative_source(self, strongest: str) -> str:
        return strongest if self.hard_negatives == STRONGEST else self.hard_negatives

    def variants(self) -> list[Variant]:
        encoders = (UNTRAINED, TRAINED) if self.train else (UNTRAINED,)
        return [Variant(p, e, k) for p in self.profile_sources for e in encoders for k in self.persona_vectors]


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
