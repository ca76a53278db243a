"""SASRec (Kang & McAuley 2018) trained with full softmax cross-entropy over all items, the "SASRec+CE" of
Klenitskiy & Vasilev (RecSys 2023): a sequential candidate generator for the leave-one-out evaluation.

It is written in plain torch because RecTools' SASRec would pull in pytorch-lightning and its version pins.
Sequences are left-padded with the index n_items and right-aligned, so the last item always sits at the last
position; pads are hidden from every real query, so neither padding nor batch makeup changes a prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ChoiceError

# Tuned on validation NDCG@10; the whole grid plus the refit takes well under 3 minutes on 2 cores for the
# data sets in use (~2,500 short sequences). Dropout 0.5 is what the paper uses on its sparse data sets.
SASREC_GRID: dict[str, tuple] = {"epochs": (50, 100), "dropout": (0.2, 0.5)}
_IGNORE = -100  # the target of a padded position


@dataclass(frozen=True)
class SASRecParams:
    hidden: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    epochs: int = 50
    learning_rate: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> SASRecParams:
        names = [f.name for f in fields(cls)]
        for name in params:
            if name not in names:
                raise ChoiceError("SASRec parameter", name, names)
        return cls(**params)


class _SASRec(nn.Module):
    def __init__(self, n_items: int, p: SASRecParams) -> None:
        super().__init__()
        self.n_items, self.heads = n_items, p.heads
        self.items = nn.Embedding(n_items + 1, p.hidden, padding_idx=n_items)
        self.positions = nn.Embedding(p.max_len, p.hidden)
        self.dropout = nn.Dropout(p.dropout)
        layer = nn.TransformerEncoderLayer(p.hidden, p.heads, dim_feedforward=p.hidden, dropout=p.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, p.layers, norm=nn.LayerNorm(p.hidden),
                                             enable_nested_tensor=False)
        for param in self.parameters():  # as RecTools does
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.items.weight[n_items].zero_()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, L) right-aligned item indices, L <= max_len -> (B, L, hidden) states."""
        length = batch.shape[1]
        pad = batch == self.n_items
        x = self.items(batch) * self.items.embedding_dim**0.5 + self.positions.weight[-length:]
        x = self.dropout(x) * ~pad[..., None]
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        # A pad key is hidden from every query but itself: a query that sees no key at all would give NaN.
        mask = causal | (pad[:, None, :] & ~torch.eye(length, dtype=torch.bool))
        return self.encoder(x, mask=mask.repeat_interleave(self.heads, dim=0))

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.items.weight[: self.n_items].T


def _right_aligned(rows: Sequence[Sequence[int]], width: int, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(rows), width) tensor, each row's last `width` values at its end, `fill` before; and the lengths."""
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    lengths = torch.zeros(len(rows), dtype=torch.long)
    for r, row in enumerate(rows):
        tail = list(row)[-width:] if width else []
        if tail:
            out[r, width - len(tail):] = torch.as_tensor(tail, dtype=torch.long)
        lengths[r] = len(tail)
    return out, lengths


def _batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Random batches of similar lengths (shuffle, stable sort by length, chunk, shuffle the chunks): most
    sequences are short, so a batch padded to its longest one wastes far less work than a random batch."""
    shuffled = torch.randperm(len(lengths), generator=generator)
    chunks = shuffled[torch.sort(lengths[shuffled], stable=True).indices].split(batch_size)
    return [chunks[int(i)] for i in torch.randperm(len(chunks), generator=generator)]


def _train(model: _SASRec, sequences: Sequence[Sequence[int]], p: SASRecParams, seed: int) -> None:
    usable = [list(s)[-(p.max_len + 1):] for s in sequences if len(s) >= 2]
    if not usable:
        return
    inputs, lengths = _right_aligned([s[:-1] for s in usable], p.max_len, model.n_items)
    targets, _ = _right_aligned([s[1:] for s in usable], p.max_len, _IGNORE)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(p.epochs):
        for batch in _batches(lengths, p.batch_size, order):
            width = int(lengths[batch].max())  # leading all-pad columns change nothing: drop them
            x, y = inputs[batch, -width:], targets[batch, -width:]
            valid = y != _IGNORE
            # Only real positions reach the (positions x n_items) logits, which dominate the cost for many items.
            loss = F.cross_entropy(model.logits(model(x)[valid]), y[valid])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _score(model: _SASRec, sequences: Sequence[Sequence[int]], max_len: int, chunk: int = 256) -> np.ndarray:
    scores = np.zeros((len(sequences), model.n_items), dtype=np.float32)
    rows = [u for u, s in enumerate(sequences) if len(s) > 0]
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), chunk):
            users = rows[start : start + chunk]
            x, lengths = _right_aligned([sequences[u] for u in users], max_len, model.n_items)
            states = model(x[:, -int(lengths.max()):])[:, -1]
            scores[users] = model.logits(states).numpy()
    return scores


def sasrec_scores(sequences: Sequence[Sequence[int]], n_items: int, n_users: int, params: Mapping[str, Any],
                  seed: int) -> np.ndarray:
    """Train on every sequence (item indices 0..n_items-1, oldest first; every position predicts the next item
    through causal self-attention, full softmax cross-entropy over all n_items), then return float32 scores
    (n_users, n_items): the next-item logits after the whole sequence of each of the FIRST n_users sequences.
    An empty sequence gets all-zero scores."""
    p = SASRecParams.of(params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # seeds init and dropout without touching the caller's RNG
            torch.manual_seed(seed)
            model = _SASRec(n_items, p)
            _train(model, sequences, p, seed)
            return _score(model, sequences[:n_users], p.max_len)
    finally:
        torch.set_num_threads(threads)
