"""Scoring users against items for the rerankers: persona max-sim, single vector, BM25, and rank fusion.

Every scorer returns a dense (users x items) matrix; `rerank` orders each user's candidates by it. A user
with no usable history item gets a zero profile, so every item ties and the candidates keep their order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..profile import ProfileConfig, history_profile
from .vectors import PersonaVectors

USER_CHUNK = 512


@dataclass(frozen=True)
class PersonaSetting:
    """A point of the persona grid: profile length N, recency decay gamma, personas kept per item."""

    last_n: int
    gamma: float
    per_item: int = 7

    def as_dict(self) -> dict[str, float | int]:
        return {"N": self.last_n, "gamma": self.gamma, "personas_per_item": self.per_item}


def profiles(histories: Sequence[Sequence[int]], item_vectors: np.ndarray, setting: PersonaSetting) -> np.ndarray:
    """(users, dim) history profiles (recency-weighted mean of the last N item vectors, p4r_search.profile)."""
    config = ProfileConfig(last_n=setting.last_n, gamma=setting.gamma)
    out = np.zeros((len(histories), item_vectors.shape[1]), dtype=np.float32)
    for u, history in enumerate(histories):
        if len(history):
            out[u] = history_profile(item_vectors[list(history)], config)
    return out


def max_sim(user_profiles: np.ndarray, personas: PersonaVectors) -> np.ndarray:
    """Item score = the cosine of its best persona with the profile (Persona4Rec's max-sim)."""
    scores = np.empty((len(user_profiles), len(personas.offsets) - 1), dtype=np.float32)
    for start in range(0, len(user_profiles), USER_CHUNK):
        sims = user_profiles[start:start + USER_CHUNK] @ personas.vectors.T
        scores[start:start + USER_CHUNK] = np.maximum.reduceat(sims, personas.offsets[:-1], axis=1)
    return scores


def cosine(user_profiles: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    return (user_profiles @ item_vectors.T).astype(np.float32)


BM25_K1, BM25_B = 1.2, 0.75  # Lucene's and tantivy's defaults, as in the embedded engine


def bm25(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """BM25 (k1 1.2, b 0.75, English stop words) of each query against every document; a query with no
    indexable word scores 0 everywhere."""
    try:
        import bm25s
    except ImportError as exc:
        raise ConfigError("the BM25 rankers need bm25s: pip install 'p4r-search[eval]'") from exc
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG on import
    index = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    index.index(bm25s.tokenize(list(documents), stopwords="en", return_ids=False, show_progress=False),
                show_progress=False)
    tokenized = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
    scores = np.zeros((len(queries), len(documents)), dtype=np.float64)
    for q, tokens in enumerate(tokenized):
        if tokens:
            scores[q] = index.get_scores(tokens)
    return scores


def rerank(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Each row of candidates ordered by descending score; equal scores keep the candidates' order."""
    picked = np.take_along_axis(scores, candidates, axis=1)
    return np.take_along_axis(candidates, np.argsort(-picked, axis=1, kind="stable"), axis=1)


def fuse(candidates: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """(users, k) fused values of the candidates: (1 - w) * generator rank + w * min-max score.

    The generator's rank r (1 = its best) becomes 1 - (r - 1) / (k - 1); the score is min-max normalised
    over the user's candidates. Both lie in [0, 1], so w = 0 keeps the generator's order and w = 1 is the
    score alone.
    """
    k = candidates.shape[1]
    rank_part = 1.0 - np.arange(k) / max(k - 1, 1)
    picked = np.take_along_axis(scores, candidates, axis=1).astype(np.float64)
    low, high = picked.min(axis=1, keepdims=True), picked.max(axis=1, keepdims=True)
    score_part = np.where(high > low, (picked - low) / np.where(high > low, high - low, 1.0), 0.0)
    return (1 - weight) * rank_part[None, :] + weight * score_part


def fused_order(candidates: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    fused = fuse(candidates, scores, weight)
    return np.take_along_axis(candidates, np.argsort(-fused, axis=1, kind="stable"), axis=1)
