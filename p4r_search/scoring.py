"""The exact reference scorer: brute-force cosine of a profile against every persona vector.

An item scores as its best-matching persona (max over its personas), as in Persona4Rec. Vectors are
unit-length, so cosine is a dot product. This is the ground truth that the HNSW path is measured against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import IndexStateError

COSINE_SLACK = 1e-3  # float32 rounding of unit vectors' dot products


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float
    persona_index: int  # index of the best persona within the item


def _cosines(sims: np.ndarray, source: str | None) -> np.ndarray:
    """Unit vectors' dot products; anything outside [-1, 1] means the stored vectors are not what was written."""
    if len(sims) and not np.abs(sims).max() <= 1 + COSINE_SLACK:  # NaN fails too
        worst = float(sims[np.nanargmax(np.abs(sims))]) if not np.isnan(sims).all() else float("nan")
        raise IndexStateError(f"{source or 'the persona vectors'} is damaged (a cosine of {worst:.4g}, outside "
                              "[-1, 1]: these are not the unit vectors written); rebuild the index with `p4r index build`")
    return sims


class ExactScorer:
    """Rows grouped by item: `vectors[offsets[i]:offsets[i+1]]` are the personas of `item_ids[i]`."""

    def __init__(self, item_ids: Sequence[str], vectors_per_item: Sequence[np.ndarray]):
        if len(item_ids) != len(vectors_per_item):
            raise ValueError("one vector matrix per item")
        sizes = np.array([len(v) for v in vectors_per_item], dtype=np.int64)
        if (sizes == 0).any():
            raise ValueError("every item needs at least one persona vector")
        self.item_ids = list(item_ids)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        dim = vectors_per_item[0].shape[1] if len(vectors_per_item) else 0
        self.vectors = (
            np.ascontiguousarray(np.concatenate(vectors_per_item), dtype=np.float32)
            if len(vectors_per_item)
            else np.zeros((0, dim), dtype=np.float32)
        )
        self._position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.source: str | None = None

    @classmethod
    def from_grouped(cls, item_ids: Sequence[str], offsets: np.ndarray, vectors: np.ndarray,
                     position: Mapping[str, int] | None = None, source: str | None = None) -> ExactScorer:
        """Without copying: rows `offsets[i]:offsets[i+1]` of `vectors` are the personas of `item_ids[i]`;
        `position` (item id -> i), when the caller has it already; `source`: the file named if they are damaged."""
        scorer = cls.__new__(cls)
        scorer.source = source
        scorer.item_ids = list(item_ids)
        scorer.offsets = np.asarray(offsets, dtype=np.int64)
        scorer.vectors = vectors
        scorer._position = position if position is not None else {item_id: i for i, item_id in enumerate(scorer.item_ids)}
        return scorer

    def item_scores(self, profile: np.ndarray) -> np.ndarray:
        """Best persona cosine of every item, in `item_ids` order."""
        if not self.item_ids:
            return np.zeros(0, dtype=np.float32)
        sims = _cosines(self.vectors @ np.asarray(profile, dtype=np.float32), self.source)
        return np.maximum.reduceat(sims, self.offsets[:-1])

    def score_items(self, profile: np.ndarray, item_ids: Iterable[str]) -> list[ScoredItem]:
        """Exact scores of the given items (unknown ids are skipped), in the order given; vectorised."""
        known = [i for i in item_ids if i in self._position]
        best, first = self._best(profile, known)
        return [ScoredItem(i, float(b), int(f)) for i, b, f in zip(known, best.tolist(), first.tolist())]

    def best_of(self, profile: np.ndarray, item_ids: Iterable[str], k: int) -> list[ScoredItem]:
        """The k best of the given items, ordered by (-score, item id); objects are made only for the items
        at or above the k-th score (a knn search proposes ten times more than it keeps)."""
        known = [i for i in item_ids if i in self._position]
        if k < 1:
            return []
        best, first = self._best(profile, known)
        keep = np.arange(len(known))
        if len(known) > k:
            keep = np.flatnonzero(best >= np.partition(best, len(best) - k)[len(best) - k])
        scored = [ScoredItem(known[n], float(best[n]), int(first[n])) for n in keep.tolist()]
        scored.sort(key=lambda s: (-s.score, s.item_id))
        return scored[:k]

    def _best(self, profile: np.ndarray, known: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each item's best cosine and the index of its first best persona."""
        if not known:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        positions = np.fromiter((self._position[i] for i in known), dtype=np.int64, count=len(known))
        starts, lengths = self.offsets[positions], self.offsets[positions + 1] - self.offsets[positions]
        segment = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = np.repeat(starts - segment, lengths) + np.arange(lengths.sum())
        sims = _cosines(self.vectors[rows] @ np.asarray(profile, dtype=np.float32), self.source)
        best = np.maximum.reduceat(sims, segment)
        hits = np.flatnonzero(sims == np.repeat(best, lengths))
        return best, hits[np.searchsorted(hits, segment)] - segment

    def rank_of(self, profile: np.ndarray, item_id: str, exclude: Iterable[str] = ()) -> int | None:
        """The item's rank (1 = best) among the items not excluded, ordered as `top_k` orders them (by score,
        ties by id), from one scan and without building results; None for an unknown or excluded item."""
        excluded = set(exclude)
        if item_id not in self._position or item_id in excluded:
            return None
        scores = self._scores_without(profile, excluded)
        mine = scores[self._position[item_id]]
        ties = sum(self.item_ids[i] < item_id for i in np.flatnonzero(scores == mine).tolist())
        return 1 + int(np.count_nonzero(scores > mine)) + ties

    def top_k(
        self,
        profile: np.ndarray,
        k: int,
        *,
        exclude: Iterable[str] = (),
        candidates: Iterable[str] | None = None,
    ) -> list[ScoredItem]:
        """The k best items by score, ties broken by item id; `candidates` restricts the scan."""
        excluded = set(exclude)
        if candidates is not None:
            return self.best_of(profile, (c for c in dict.fromkeys(candidates) if c not in excluded), k)
        scores = self._scores_without(profile, excluded)
        top = min(k, len(scores))
        if top == 0:
            return []
        cut = scores[np.argpartition(-scores, top - 1)[:top]].min()
        # every item tied at the cut is scored, so that ties are ordered by id, not by position
        chosen = np.flatnonzero((scores >= cut) & np.isfinite(scores))
        return self.best_of(profile, (self.item_ids[i] for i in chosen), k)

    def _scores_without(self, profile: np.ndarray, excluded: set[str]) -> np.ndarray:
        """`item_scores`, with the excluded items at -inf."""
        scores = self.item_scores(profile)
        for item_id in excluded & self._position.keys():
            scores[self._position[item_id]] = -np.inf
        return scores
