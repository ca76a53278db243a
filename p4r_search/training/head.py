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
from ..persona_vectors import PersonaVectorKind
from ..profile import ProfileSource, unit_rows
from .examples import TrainingSet

SCALE = 20.0  # MultipleNegativesRankingLoss's default
POSITIVES = ("persona", "item")


@dataclass(frozen=True)
class HeadSettings:
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    positive: str = "persona"  # "persona": the persona the user's review supports; "item": the item's best persona

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("training needs at least 1 epoch and batches of at least 2 examples")
        if self.learning_rate <= 0:
            raise ConfigError(f"the learning rate must be positive, got {self.learning_rate}")
        if self.positive not in POSITIVES:
            raise ChoiceError("positive", self.positive, POSITIVES)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainedHead:
    weight: np.ndarray  # (dim, dim): the trained text vector is normalise(e + weight @ e)
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch
    examples: int = 0

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """The trained encoder's vectors from the base encoder's unit vectors (rows)."""
        return apply_head(vectors, self.weight)


def apply_head(vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return unit_rows(vectors + vectors @ weight.T.astype(np.float32))


def _torch_sparse(matrix):
    import torch

    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False).coalesce()


class _Forward:
    """Every vector of the training set as a function of W, computed the way serving computes it."""

    def __init__(self, data: TrainingSet, base: np.ndarray):
        import torch

        self.torch = torch
        self.data = data
        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
        self.evidence = _torch_sparse(data.personas.evidence)
        self.has_evidence = torch.from_numpy(np.diff(data.personas.evidence.indptr) > 0)
        pads = torch.from_numpy(data.personas.item_personas)
        self.item_personas, self.item_mask = pads.clamp(min=0), pads >= 0
        self.interaction_items = torch.from_numpy(data.interaction_items)
        reviews = torch.from_numpy(data.interaction_reviews)
        self.interaction_reviews, self.has_review = reviews.clamp(min=0), reviews >= 0
        self.anchors = data.anchors
        self.positive_evidence = data.positive_evidence
        self.positive_text = torch.from_numpy(data.positive_text)

    def texts(self, weight):
        out = self.base + self.base @ weight.T
        return self.torch.nn.functional.normalize(out, dim=-1)

    def combine(self, text, evidence, has_evidence):
        """persona_vectors.combine, in torch: text, evidence (text where none) or blend."""
        normalize = self.torch.nn.functional.normalize
        if self.data.kind is PersonaVectorKind.TEXT:
            return text
        evidence = normalize(evidence, dim=-1)
        mixed = evidence if self.data.kind is PersonaVectorKind.EVIDENCE else normalize(evidence + text, dim=-1)
        return self.torch.where(has_evidence[:, None], mixed, text)

    def personas(self, texts):
        return self.combine(texts[self.data.personas.text_rows], self.torch.sparse.mm(self.evidence, texts),
                            self.has_evidence)

    def items(self, personas):
        """profile.item_vector: the normalised mean of each item's persona vectors."""
        summed = (personas[self.item_personas] * self.item_mask[..., None]).sum(dim=1)
        return self.torch.nn.functional.normalize(summed, dim=-1)

    def anchors_of(self, batch: np.ndarray, texts, items):
        """profile.history_profile over profile.interaction_vector, for the batch's examples."""
        normalize = self.torch.nn.functional.normalize
        rows = self.anchors[batch]
        used = np.unique(rows.indices)
        item = items[self.interaction_items[used]]
        if self.data.source is ProfileSource.ITEMS:
            vectors = item
        else:
            review = texts[self.interaction_reviews[used]]
            mixed = review if self.data.source is ProfileSource.REVIEWS else normalize(item + review, dim=-1)
            vectors = self.torch.where(self.has_review[used][:, None], mixed, item)
        local = rows[:, used]
        return normalize(self.torch.sparse.mm(_torch_sparse(local), vectors), dim=-1)

    def positives_of(self, batch: np.ndarray, texts):
        rows = self.positive_evidence[batch]
        has = self.torch.from_numpy(np.diff(rows.indptr) > 0)
        evidence = self.torch.sparse.mm(_torch_sparse(rows), texts)
        return self.combine(texts[self.positive_text[batch]], evidence, has)

    def item_scores(self, every, items):
        """(batch, n) max-sim scores of items (batch, n), from the (batch, personas) cosines `every`."""
        rows = self.item_personas[items]  # (batch, n, most personas)
        sims = self.torch.gather(every, 1, rows.reshape(len(items), -1)).reshape(rows.shape)
        return sims.masked_fill(~self.item_mask[items], -1e4).amax(dim=-1)

    def best_other(self, every, batch: np.ndarray, targets):
        """The best cosine among the target item's personas other than the positive one (-1e4 if none)."""
        rows = self.item_personas[targets]
        mask = self.item_mask[targets] & (rows != self.torch.from_numpy(self.data.positive_persona[batch])[:, None])
        sims = self.torch.gather(every, 1, rows)
        return sims.masked_fill(~mask, -1e4).amax(dim=-1)

    def loss(self, batch: np.ndarray, weight, positive: str = "persona"):
        torch = self.torch
        texts = self.texts(weight)
        personas = self.personas(texts)
        anchors = self.anchors_of(batch, texts, self.items(personas))
        positives = self.positives_of(batch, texts)
        logits = anchors @ positives.T
        targets = torch.from_numpy(self.data.targets[batch])
        same_item = (targets[:, None] == targets[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
        logits = logits.masked_fill(same_item, -1e4)
        every = anchors @ personas.T  # item scores by gathering from here: cheaper to differentiate
        if positive == "item":
            logits = logits + torch.diag(self.best_other(every, batch, targets) - logits.diagonal()).clamp(min=0)
        hard = torch.from_numpy(self.data.hard[batch])
        if hard.shape[1]:
            sims = self.item_scores(every, hard.clamp(min=0))
            sims = sims.masked_fill((hard < 0) | (hard == targets[:, None]), -1e4)
            logits = torch.cat([logits, sims], dim=1)
        return torch.nn.functional.cross_entropy(SCALE * logits, torch.arange(len(batch)))


def train_head(data: TrainingSet, base: np.ndarray, settings: HeadSettings,
               progress: Callable[[Iterable], Iterable] = lambda it: it) -> TrainedHead:
    """Train W on `data`, whose texts are embedded (unit rows, in `data.texts` order) by the base model."""
    import torch

    if len(data) < 2:
        raise ConfigError(f"{len(data)} training example(s): training needs users with at least two interactions "
                          "that have reviews")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    forward = _Forward(data, base)
    dim = base.shape[1]
    weight = torch.zeros(dim, dim, requires_grad=True)
    optimiser = torch.optim.AdamW([weight], lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses = []
    for _ in progress(range(settings.epochs)):
        order = rng.permutation(len(data))
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = np.sort(order[start:start + settings.batch_size])
            if len(batch) < 2:
                continue
            loss = forward.loss(batch, weight, settings.positive)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
    return TrainedHead(weight.detach().numpy().copy(), losses, len(data))


def mean_loss(data: TrainingSet, base: np.ndarray, weight: np.ndarray, batch_size: int = 128, seed: int = 0) -> float:
    """The loss of a given W over the whole set, batched as in training (for tests and reports)."""
    import torch

    forward = _Forward(data, base)
    order = np.random.default_rng(seed).permutation(len(data))
    with torch.no_grad():
        w = torch.from_numpy(np.asarray(weight, dtype=np.float32))
        losses = [(float(forward.loss(np.sort(order[s:s + batch_size]), w)), len(order[s:s + batch_size]))
                  for s in range(0, len(order), batch_size) if len(order[s:s + batch_size]) >= 2]
    return sum(l * n for l, n in losses) / sum(n for _, n in losses)


def ranking_accuracy(data: TrainingSet, base: np.ndarray, weight: np.ndarray) -> float:
    """The share of examples whose positive outscores every one of their hard-negative items (max-sim)."""
    import torch

    forward = _Forward(data, base)
    batch = np.arange(len(data))
    with torch.no_grad():
        w = torch.from_numpy(np.asarray(weight, dtype=np.float32))
        texts = forward.texts(w)
        personas = forward.personas(texts)
        anchors = forward.anchors_of(batch, texts, forward.items(personas))
        positive = (anchors * forward.positives_of(batch, texts)).sum(dim=-1)
        hard = torch.from_numpy(data.hard)
        if not hard.shape[1]:
            return 1.0
        sims = forward.item_scores(anchors @ personas.T, hard.clamp(min=0))
        sims = sims.masked_fill((hard < 0) | (hard == torch.from_numpy(data.targets)[:, None]), -1e4)
        return float((positive[:, None] > sims).all(dim=1).float().mean())
