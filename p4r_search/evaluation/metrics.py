"""Ranking metrics with binary relevance: HR@k, MRR@k, NDCG@k and Recall@k, in numpy.

Definitions (the trec_eval ones, as computed by ir-measures; cross-checked in tests/test_eval_metrics.py):

- HR@k: 1 if any relevant item is in the top k, else 0.
- MRR@k: 1 / rank of the first relevant item in the top k, 0 if none is (reciprocal rank cut at k).
- NDCG@k: sum over relevant items in the top k of 1 / log2(rank + 1), divided by the ideal value,
  sum over ranks 1..min(#relevant, k) of 1 / log2(rank + 1).
- Recall@k: relevant items in the top k / #relevant.

A ranked list is an ordered sequence of item ids, best first; it may be shorter than k (the missing ranks
count as misses) and a repeated id counts once, at its first rank. Ties are the ranker's business: these
functions see an order, never scores (`rank_by_score` gives the package's order: score desc, then id).
Every query needs at least one relevant item; its absence is an error, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

DEFAULT_KS = (5, 10, 20)
METRICS = ("HR", "MRR", "NDCG", "Recall")


def rank_by_score(scores: Mapping[str, float]) -> list[str]:
    """Item ids by descending score; equal scores in ascending id order (deterministic)."""
    return sorted(scores, key=lambda item_id: (-scores[item_id], item_id))


def hit_matrix(ranked: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], depth: int) -> np.ndarray:
    """(queries, depth) booleans: whether rank r+1 of query q holds a relevant item."""
    if len(ranked) != len(relevant):
        raise ConfigError(f"{len(ranked)} ranked lists but {len(relevant)} relevance sets")
    hits = np.zeros((len(ranked), depth), dtype=bool)
    for q, (items, wanted) in enumerate(zip(ranked, relevant)):
        if not wanted:
            raise ConfigError(f"query {q} has no relevant item")
        for r, item_id in enumerate(dict.fromkeys(items)):
            if r >= depth:
                break
            hits[q, r] = item_id in wanted
    return hits


def per_query(
    ranked: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """Every metric at every k, one value per query: keys like "NDCG@10"."""
    if not ks or min(ks) < 1:
        raise ConfigError(f"cut-offs must be positive, got {list(ks)}")
    depth = max(ks)
    hits = hit_matrix(ranked, relevant, depth)
    n_relevant = np.array([len(set(w)) for w in relevant], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    ideal = np.cumsum(discounts)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        top = hits[:, :k]
        found = top.sum(axis=1)
        out[f"HR@{k}"] = (found > 0).astype(np.float64)
        out[f"MRR@{k}"] = np.where((first > 0) & (first <= k), 1.0 / np.maximum(first, 1), 0.0)
        idcg = ideal[np.minimum(n_relevant, k).astype(int) - 1]
        out[f"NDCG@{k}"] = (top * discounts[:k]).sum(axis=1) / idcg
        out[f"Recall@{k}"] = found / n_relevant
    return out


def evaluate(
    ranked: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Mean of every metric over the queries, keys like "HR@10" (metric-major, then k)."""
    if not ranked:
        raise ConfigError("no queries to evaluate")
    values = per_query(ranked, relevant, ks)
    return {f"{m}@{k}": float(values[f"{m}@{k}"].mean()) for m in METRICS for k in ks}
