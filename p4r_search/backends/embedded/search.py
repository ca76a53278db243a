"""How the embedded engine answers a `PersonaQuery`: choose exact scan or HNSW, add BM25, fuse.

Vector scores are exact cosines: HNSW only proposes items, and each proposed item is then scored by its
best persona exactly, as Elasticsearch rescoring or OpenSearch's exact nested scoring would.
Rows pass the filters before scoring (like Lucene's filtered kNN); when the rows allowed by the filters,
or the whole index, are fewer than `exact_threshold`, the scan is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ... import fusion
from ...query import Fusion, Mode, PersonaQuery
from ...scoring import ScoredItem
from .store import TantivyStore
from .vectors import VectorCache

BM25_ROWS_PER_ITEM = 8  # rows fetched per wanted item, since an item has up to 7 personas


@dataclass(frozen=True)
class FusedItem:
    item_id: str
    score: float
    persona_index: int
    components: dict[str, float]


def allowed_items(cache: VectorCache, store: TantivyStore, filters: Mapping[str, tuple[str, ...]],
                  candidate_ids: Sequence[str] | None) -> set[str] | None:
    """Items that may be returned, before exclusions: the filters' and the candidates' intersection (None:
    no restriction). Candidates are taken as given, indexed or not."""
    allowed: set[str] | None = None
    if filters:
        keys = store.filter_row_keys(dict(filters))
        allowed = cache.items_having_keys(keys)
    if candidate_ids is not None:
        candidates = set(candidate_ids)
        allowed = candidates if allowed is None else allowed & candidates
    return allowed


class SearchPlan:
    def __init__(self, query: PersonaQuery, cache: VectorCache, store: TantivyStore, exact_threshold: int):
        self.query = query
        self.cache = cache
        self.store = store
        self.exact_threshold = exact_threshold

    def run(self) -> list[FusedItem]:
        allowed = self._allowed_items()
        if self.query.mode is Mode.RESCORE:
            return self._rescore(allowed)
        if self.query.mode is not Mode.HYBRID:
            scored = self._vector_items(self.query.k, allowed)
            return [FusedItem(s.item_id, s.score, s.persona_index, {"cosine": s.score}) for s in scored]
        return self._hybrid(allowed)

    def _allowed_items(self) -> set[str] | None:
        return allowed_items(self.cache, self.store, self.query.filters, self.query.candidate_ids)

    def _vector_items(self, count: int, allowed: set[str] | None) -> list[ScoredItem]:
        q, scorer = self.query, self.cache.scorer
        if self._scan_exactly(allowed):
            candidates = None if allowed is None else sorted(allowed)
            return scorer.top_k(q.vector, count, exclude=q.exclude_ids, candidates=candidates)
        proposed = self.cache.knn_items(q.vector, max(count, q.num_candidates), count, allowed, q.exclude_ids)
        return scorer.best_of(q.vector, proposed, count)

    def _scan_exactly(self, allowed: set[str] | None) -> bool:
        if self.query.mode is Mode.EXACT or self.query.candidate_ids is not None:
            return True
        if allowed is not None:
            rows = sum(len(self.cache.item_rows.get(i, ())) for i in allowed)
            return rows <= self.exact_threshold
        return len(self.cache) <= self.exact_threshold

    def _bm25_items(self, allowed: set[str] | None) -> dict[str, float]:
        """Best BM25 score of any persona of each item (as a nested query with score_mode max)."""
        q = self.query
        ids = None if q.candidate_ids is None else sorted(allowed or ())
        rows = self.store.bm25(q.text or "", q.num_candidates * BM25_ROWS_PER_ITEM, dict(q.filters), ids)
        best: dict[str, float] = {}
        for item, (_, score) in zip(self.cache.items_of_keys([key for key, _ in rows]), rows):
            if item is None or item in q.exclude_ids or (allowed is not None and item not in allowed):
                continue
            best[item] = max(best.get(item, 0.0), score)
        top = fusion.ranked(best)[: q.num_candidates]
        return {item: best[item] for item in top}

    def _hybrid(self, allowed: set[str] | None) -> list[FusedItem]:
        q = self.query
        vector = {s.item_id: s.score for s in self._vector_items(q.num_candidates, allowed)}
        keyword = self._bm25_items(allowed)
        weights = (q.vector_weight, q.text_weight)
        if q.fusion is Fusion.RRF:
            fused = fusion.rrf([vector, keyword], weights, q.rank_constant)
        else:
            fused = fusion.linear([vector, keyword], weights)
        top = fusion.ranked(fused)[: q.k]
        exact = {s.item_id: s for s in self.cache.scorer.score_items(q.vector, top)}
        return [
            FusedItem(
                item,
                fused[item],
                exact[item].persona_index,
                {"cosine": exact[item].score, "bm25": keyword.get(item, 0.0), "fused": fused[item]},
            )
            for item in top
        ]

    def _rescore(self, allowed: set[str] | None) -> list[FusedItem]:
        """The window (the best items by BM25) reranked by `text_weight * bm25 + vector_weight * cosine`, as a
        cluster's `rescore` with query_weight and rescore_query_weight (score_mode total) does."""
        q = self.query
        window = self._bm25_items(allowed)
        exact = {s.item_id: s for s in self.cache.scorer.score_items(q.vector, list(window))}
        fused = {i: q.text_weight * window[i] + q.vector_weight * exact[i].score for i in window if i in exact}
        return [FusedItem(item, fused[item], exact[item].persona_index,
                          {"cosine": exact[item].score, "bm25": window[item], "fused": fused[item]})
                for item in fusion.ranked(fused)[: q.k]]
