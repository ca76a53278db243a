"""A batch of training examples as a function of the head W, computed the way serving computes it.

Every vector comes from the texts' base embeddings: text vectors `normalise(e + W e)`; persona vectors as
persona_vectors.combine (text, evidence centroid, blend); item vectors as profile.item_vector; anchors as
profile.history_profile over profile.interaction_vectors. Only what the batch touches is computed (its
examples' history items, positives, hard negatives, their personas and texts), so a step costs the same in a
catalog of 400 items or 40,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from ..persona_vectors import PersonaVectorKind
from ..profile import ProfileSource
from .examples import TrainingSet

MASKED = -1e4


def _torch_sparse(matrix: csr_matrix):
    import torch

    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False).coalesce()


def _lookup(needed: np.ndarray, size: int) -> np.ndarray:
    """Global index → position in `needed` (-1 where absent)."""
    local = np.full(size, -1, dtype=np.int64)
    local[needed] = np.arange(len(needed))
    return local


@dataclass(frozen=True)
class BatchIndex:
    """What a batch touches, renumbered from 0: items, personas, texts and history interactions."""

    texts: np.ndarray  # global text rows
    item_personas: np.ndarray  # (items, most personas) local persona indices, -1 padded
    persona_text: np.ndarray  # (personas,) local text row
    persona_evidence: csr_matrix  # (personas, texts) evidence, summed
    persona_item: csr_matrix  # (personas, texts) the item's reviews, mean weights
    interaction_item: np.ndarray  # (interactions,) local item
    interaction_review: np.ndarray  # (interactions,) local text row, -1 without a review
    anchors: csr_matrix  # (batch, interactions) recency weights
    positive_text: np.ndarray  # (batch,) local text row
    positive_evidence: csr_matrix  # (batch, texts)
    positive_item: csr_matrix  # (batch, texts)
    targets: np.ndarray  # (batch,) local item
    positive_persona: np.ndarray  # (batch,) local persona
    hard: np.ndarray  # (batch, negatives) local item, -1 padded


def batch_index(data: TrainingSet, batch: np.ndarray) -> BatchIndex:
    anchors = data.anchors[batch]
    interactions = np.unique(anchors.indices)
    hard = data.hard[batch]
    items = np.unique(np.concatenate([data.interaction_items[interactions], hard[hard >= 0], data.targets[batch]]))
    pads = data.personas.item_personas[items]
    personas = np.unique(pads[pads >= 0])
    evidence = data.personas.evidence[personas]
    item_evidence = data.personas.item_evidence[personas]
    positive_evidence = data.positive_evidence[batch]
    positive_item = data.positive_item[batch]
    reviews = data.interaction_reviews[interactions]
    texts = np.unique(np.concatenate([data.personas.text_rows[personas], evidence.indices, reviews[reviews >= 0],
                                      data.positive_text[batch], positive_evidence.indices,
                                      *((item_evidence.indices, positive_item.indices) if data.prior else ())]))
    local_text = _lookup(texts, len(data.texts))
    local_persona = _lookup(personas, data.personas.evidence.shape[0])
    local_item = _lookup(items, len(data.personas.item_ids))
    return BatchIndex(
        texts=texts,
        item_personas=np.where(pads >= 0, local_persona[np.maximum(pads, 0)], -1),
        persona_text=local_text[data.personas.text_rows[personas]],
        persona_evidence=evidence[:, texts],
        persona_item=item_evidence[:, texts] if data.prior else item_evidence[:, :0],
        interaction_item=local_item[data.interaction_items[interactions]],
        interaction_review=np.where(reviews >= 0, local_text[np.maximum(reviews, 0)], -1),
        anchors=anchors[:, interactions],
        positive_text=local_text[data.positive_text[batch]],
        positive_evidence=positive_evidence[:, texts],
        positive_item=positive_item[:, texts] if data.prior else positive_item[:, :0],
        targets=local_item[data.targets[batch]],
        positive_persona=local_persona[data.positive_persona[batch]],
        hard=np.where(hard >= 0, local_item[np.maximum(hard, 0)], -1),
    )


@dataclass
class BatchVectors:
    anchors: object  # torch (batch, dim)
    positives: object  # torch (batch, dim)
    personas: object  # torch (personas, dim), local
    index: BatchIndex


class Forward:
    def __init__(self, data: TrainingSet, base: np.ndarray):
        import torch

        self.torch = torch
        self.data = data
        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))

    def combine(self, text, evidence, has_evidence):
        """persona_vectors.combine: text, evidence (text where there is none) or blend."""
        normalize = self.torch.nn.functional.normalize
        if self.data.kind is PersonaVectorKind.TEXT:
            return text
        evidence = normalize(evidence, dim=-1)
        mixed = evidence if self.data.kind is PersonaVectorKind.EVIDENCE else normalize(evidence + text, dim=-1)
        return self.torch.where(has_evidence[:, None], mixed, text)

    def evidence(self, summed: csr_matrix, item: csr_matrix, texts):
        """Σ evidence + prior · item centroid (persona_vectors.evidence_vector, before normalising)."""
        torch = self.torch
        out = torch.sparse.mm(_torch_sparse(summed), texts)
        if self.data.prior:
            centroid = self.torch.nn.functional.normalize(torch.sparse.mm(_torch_sparse(item), texts), dim=-1)
            out = out + self.data.prior * centroid
        return out

    def vectors(self, batch: np.ndarray, weight) -> BatchVectors:
        torch, normalize = self.torch, self.torch.nn.functional.normalize
        ix = batch_index(self.data, batch)
        base = self.base[torch.from_numpy(ix.texts)]
        texts = normalize(base + base @ weight.T, dim=-1)
        personas = self.combine(texts[torch.from_numpy(ix.persona_text)],
                                self.evidence(ix.persona_evidence, ix.persona_item, texts),
                                torch.from_numpy(np.diff(ix.persona_evidence.indptr) > 0))
        pads = torch.from_numpy(ix.item_personas)
        items = normalize((personas[pads.clamp(min=0)] * (pads >= 0)[..., None]).sum(dim=1), dim=-1)
        interactions = items[torch.from_numpy(ix.interaction_item)]
        if self.data.source is not ProfileSource.ITEMS:
            review_rows = torch.from_numpy(ix.interaction_review)
            review = texts[review_rows.clamp(min=0)]
            mixed = review if self.data.source is ProfileSource.REVIEWS else normalize(interactions + review, dim=-1)
            interactions = torch.where((review_rows >= 0)[:, None], mixed, interactions)
        anchors = normalize(torch.sparse.mm(_torch_sparse(ix.anchors), interactions), dim=-1)
        positives = self.combine(texts[torch.from_numpy(ix.positive_text)],
                                 self.evidence(ix.positive_evidence, ix.positive_item, texts),
                                 torch.from_numpy(np.diff(ix.positive_evidence.indptr) > 0))
        return BatchVectors(anchors, positives, personas, ix)

    def item_scores(self, every, items: np.ndarray, ix: BatchIndex):
        """(batch, n) max-sim scores of local items (batch, n), from the (batch, personas) cosines `every`;
        MASKED where an item index is -1."""
        torch = self.torch
        rows = torch.from_numpy(ix.item_personas[np.maximum(items, 0)])  # (batch, n, most personas)
        sims = torch.gather(every, 1, rows.clamp(min=0).reshape(len(items), -1)).reshape(rows.shape)
        sims = sims.masked_fill(rows < 0, MASKED).amax(dim=-1)
        return sims.masked_fill(torch.from_numpy(items < 0), MASKED)

    def logits(self, batch: np.ndarray, weight, positive: str = "persona"):
        """(batch, batch + negatives) cosines: the positives on the diagonal, the other examples' positives (those
        of the same item masked), then the hard-negative items' max-sim scores (the target itself masked)."""
        torch = self.torch
        v = self.vectors(batch, weight)
        ix = v.index
        logits = v.anchors @ v.positives.T
        targets = torch.from_numpy(ix.targets)
        same_item = (targets[:, None] == targets[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
        logits = logits.masked_fill(same_item, MASKED)
        every = v.anchors @ v.personas.T  # item scores gathered from here: cheaper to differentiate
        if positive == "item":  # the item's best persona, the positive one counting with its own review left out
            others = ix.item_personas[ix.targets]
            others = np.where(others == ix.positive_persona[:, None], -1, others)
            sims = torch.gather(every, 1, torch.from_numpy(np.maximum(others, 0)))
            best = sims.masked_fill(torch.from_numpy(others < 0), MASKED).amax(dim=-1)
            logits = logits + torch.diag((best - logits.diagonal()).clamp(min=0))
        if ix.hard.shape[1]:
            hard = np.where(ix.hard == ix.targets[:, None], -1, ix.hard)
            logits = torch.cat([logits, self.item_scores(every, hard, ix)], dim=1)
        return logits
