"""Contrastive training of a residual linear head on top of a frozen sentence-transformers encoder.

The trained encoder embeds a text as `normalise(e + W e)`, where `e` is the base model's unit embedding: a
sentence-transformers `Dense` module (identity activation, no bias, residual) and a `Normalize` module
appended to the base model (model.py). W starts at zero, so training starts from the base model.

Why a head and not the whole transformer: an anchor is a profile, the recency-weighted mean of up to N
review or item embeddings (built exactly as at serving time), so one example touches tens of texts. With
the base frozen, every text is embedded once (the evaluation's cache already holds them) and a step costs a
few matrix products instead of tens of transformer passes: on this 2-core machine an epoch takes seconds,
where a full fine-tune would take many minutes per epoch.

The loss is MultipleNegativesRankingLoss's (sentence-transformers): cross-entropy over scaled cosines
(scale 20) of each anchor with its positive, the other positives of the batch (those of the same item
masked out: they are not negatives) and its hard-negative items, each item scored by its best persona.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ChoiceError, ConfigError
from ..profile import unit_rows
from .examples import TrainingSet
from .forward import Forward

SCALE = 20.0  # MultipleNegativesRankingLoss's default
POSITIVES = ("persona", "item")


@dataclass(frozen=True)
class HeadSettings:
    epochs: int = 8
    max_steps: int | None = 200  # optimiser steps at most (None: no cap): bounds the time on large data
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    positive: str = "persona"  # "persona": the persona the user's review supports; "item": the item's best persona

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError("training needs at least 1 epoch, 1 step and batches of at least 2 examples")
        if self.learning_rate <= 0:
            raise ConfigError(f"the learning rate must be positive, got {self.learning_rate}")
        if self.positive not in POSITIVES:
            raise ChoiceError("positive", self.positive, POSITIVES)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainedHead:
    weight: np.ndarray  # (dim, dim): the trained text vector is normalise(e + weight @ e)
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch (begun)
    examples: int = 0
    steps: int = 0

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """The trained encoder's vectors from the base encoder's unit vectors (rows)."""
        return apply_head(vectors, self.weight)


def apply_head(vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return unit_rows(vectors + vectors @ weight.T.astype(np.float32))


def train_head(data: TrainingSet, base: np.ndarray, settings: HeadSettings,
               progress: Callable[[Iterable], Iterable] = lambda it: it) -> TrainedHead:
    """Train W on `data`, whose texts are embedded (unit rows, in `data.texts` order) by the base model."""
    import torch

    if len(data) < 2:
        raise ConfigError(f"{len(data)} training example(s): training needs users with at least two interactions "
                          "that have reviews")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    forward = Forward(data, base)
    dim = base.shape[1]
    weight = torch.zeros(dim, dim, requires_grad=True)
    optimiser = torch.optim.AdamW([weight], lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses, steps = [], 0
    for _ in progress(range(settings.epochs)):
        if steps == settings.max_steps:
            break
        order = rng.permutation(len(data))
        total, seen = 0.0, 0
        for start in range(0, len(order), settings.batch_size):
            batch = np.sort(order[start:start + settings.batch_size])
            if len(batch) < 2:
                continue
            if steps == settings.max_steps:
                break
            loss = batch_loss(forward, batch, weight, settings.positive)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, seen, steps = total + loss.item() * len(batch), seen + len(batch), steps + 1
        if seen:
            losses.append(total / seen)
    return TrainedHead(weight.detach().numpy().copy(), losses, len(data), steps)


def batch_loss(forward: Forward, batch: np.ndarray, weight, positive: str = "persona"):
    import torch

    return torch.nn.functional.cross_entropy(SCALE * forward.logits(batch, weight, positive), torch.arange(len(batch)))


def _chunks(data: TrainingSet, size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(data))
    return [np.sort(order[s:s + size]) for s in range(0, len(order), size) if len(order[s:s + size]) >= 2]


def mean_loss(data: TrainingSet, base: np.ndarray, weight: np.ndarray, batch_size: int = 128, seed: int = 0) -> float:
    """The loss of a given W over the whole set, batched as in training (for tests and reports)."""
    import torch

    forward = Forward(data, base)
    w = torch.from_numpy(np.asarray(weight, dtype=np.float32))
    with torch.no_grad():
        losses = [(float(batch_loss(forward, batch, w)), len(batch)) for batch in _chunks(data, batch_size, seed)]
    return sum(value * n for value, n in losses) / sum(n for _, n in losses)


def ranking_accuracy(data: TrainingSet, base: np.ndarray, weight: np.ndarray) -> float:
    """The share of examples whose positive outscores every one of their hard-negative items (max-sim)."""
    import torch

    if not data.hard.shape[1]:
        return 1.0
    forward = Forward(data, base)
    w = torch.from_numpy(np.asarray(weight, dtype=np.float32))
    wins = 0
    with torch.no_grad():
        for batch in _chunks(data, 512, 0):
            logits = forward.logits(batch, w)
            wins += int((logits.diagonal()[:, None] > logits[:, len(batch):]).all(dim=1).sum())
    return wins / len(data)
