"""Scoring users against items for the rerankers: persona max-sim, BM25, and rank fusion.

Every scorer returns a dense (users x items) matrix; `rerank` orders each user's candidates by it. A user
with no usable history item gets a zero profile (variants.HistoryTable), so every item ties and the
candidates keep their order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..fusion import candidate_fusion, candidate_score_fusion, row_minmax
from .vectors import PersonaVectors

USER_CHUNK = 512


def max_sim(user_profiles: np.ndarray, personas: PersonaVectors) -> np.ndarray:
    """Item score = the cosine of its best persona with the profile (Persona4Rec's max-sim)."""
    scores = np.empty((len(user_profiles), len(personas.offsets) - 1), dtype=np.float32)
    for start in range(0, len(user_profiles), USER_CHUNK):
        sims = user_profiles[start:start + USER_CHUNK] @ personas.vectors.T
        scores[start:start + USER_CHUNK] = np.maximum.reduceat(sims, personas.offsets[:-1], axis=1)
    return scores


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
    return by_value(candidates, np.take_along_axis(scores, candidates, axis=1))


def fuse(candidates: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """(users, k) fused values of the candidates: the product's candidate fusion (fusion.candidate_fusion) of
    the generator's order with the min-max score, so that the weight tuned here is the one to use there."""
    return candidate_fusion(np.take_along_axis(scores, candidates, axis=1), weight)


def fused_order(candidates: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    return by_value(candidates, fuse(candidates, scores, weight))


def score_fused_order(candidates: np.ndarray, scores: np.ndarray, generator_scores: np.ndarray,
                      weight: float) -> np.ndarray:
    """The generator's min-max *score* over the candidates in place of its rank, fused with the persona score."""
    return by_value(candidates, candidate_score_fusion(np.take_along_axis(generator_scores, candidates, axis=1),
                                                       np.take_along_axis(scores, candidates, axis=1), weight))


def evidence_fused_order(candidates: np.ndarray, scores: np.ndarray, evidence: np.ndarray, weight: float,
                         half: float) -> np.ndarray:
    """Rank fusion whose persona weight shrinks with the item's CF evidence n (its training interactions):
    w · half / (half + n), so a long-tail item leans on its personas and a popular one on the generator."""
    k = candidates.shape[1]
    rank_part = (1.0 - np.arange(k) / max(k - 1, 1))[None, :]
    item_weight = weight * half / (half + evidence[candidates])
    persona = row_minmax(np.take_along_axis(scores, candidates, axis=1))
    return by_value(candidates, (1 - item_weight) * rank_part + item_weight * persona)


def by_value(candidates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Candidates by descending value; equal values keep the candidates' order."""
    return np.take_along_axis(candidates, np.argsort(-values, axis=1, kind="stable"), axis=1)
