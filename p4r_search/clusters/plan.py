"""A search as a small plan of requests, and how their results combine. Pure: no I/O.

knn mode on float vectors is one request: the engine's nested kNN scores each item by its best persona in
float cosine (converted back from (1 + cos) / 2) and names that persona in its inner hit. Otherwise stage 1
proposes items: one ranked list (vector, or fused server-side) or two (vector and BM25, fused client-side
with `p4r_search.fusion`, exactly as the embedded engine fuses), and stage 2 scores the final items exactly
(painless cosine over every persona, `score_mode: max`), which gives every backend the same cosine and the
same best persona for the explanation, whatever stage 1's score scale was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .. import fusion
from ..query import Fusion, Mode, PersonaQuery
from . import dsl
from .capabilities import vector_score_to_cosine
from .model import Request


@dataclass(frozen=True)
class Proposal:
    name: str  # "vector", "bm25" or "fused"
    request: Request
    # to the embedded engine's scale: cosine for vector lists, p4r_search.fusion's scale for fused ones
    convert: Callable[[float], float] | None = None


@dataclass(frozen=True)
class SearchPlan:
    proposals: list[Proposal]
    # exact scoring of the chosen items, with inner hits; None where stage 1 already did (final_is_exact)
    rescore: Callable[[Sequence[str]], Request] | None
    setup: list[Request] = field(default_factory=list)  # e.g. an OpenSearch search pipeline
    final_is_exact: bool = False  # stage 1 already scored exactly and explained: no rescoring needed
    # server-side fusion returns only the fused score: this asks for the chosen items' BM25 component
    keyword_scores: Callable[[Sequence[str]], Request] | None = None
    # BM25 to the embedded engine's scale (Lucene's BM25 before it dropped the k1 + 1 factor): 2.2 on OpenSearch 3.x
    keyword_scale: float = 1.0

    def requests(self, item_ids_for_rescore: Sequence[str] = ("<ids from stage 1>",)) -> list[Request]:
        """Every request, in order, for --dry-run."""
        tail = [] if self.final_is_exact else [self.rescore(list(item_ids_for_rescore))]
        if self.keyword_scores is not None:
            tail.append(self.keyword_scores(list(item_ids_for_rescore)))
        return self.setup + [p.request for p in self.proposals] + tail


def exact_plan(exact: Request, rescore: Callable[[Sequence[str]], Request]) -> SearchPlan:
    """Exact mode: one request scores and explains; its 1+cos scores convert back to cosine."""
    return SearchPlan([Proposal("vector", exact, lambda s: s - 1.0)], rescore, final_is_exact=True)


def knn_alone_answers(query: PersonaQuery) -> bool:
    """knn mode without candidate ids: on float vectors the engine's kNN is the whole answer (`one_request`);
    the only plan that depends on how the index stores its vectors."""
    return query.mode is Mode.KNN and query.candidate_ids is None


def exact_scan(query: PersonaQuery) -> bool:
    """Exact mode over the whole index (no candidate ids)."""
    return query.mode is Mode.EXACT and query.candidate_ids is None


VECTOR_MODES = (Mode.KNN, Mode.EXACT)  # the modes whose plan depends on how the vectors are stored


def native_candidates(query: PersonaQuery) -> bool:
    """Candidate ids in knn or exact mode, few enough that Lucene's filtered kNN scores every persona of them
    exactly (dsl.NATIVE_EXACT_ITEMS)."""
    return query.mode in VECTOR_MODES and query.candidate_ids is not None and \
        len(query.candidate_ids) <= dsl.NATIVE_EXACT_ITEMS


def one_request(knn: Request) -> SearchPlan:
    """knn mode where the engine's kNN scores are float cosines: its ranking, scores and inner hits are the
    answer, as the embedded engine's exact rescoring would give them (its (1 + cos) / 2 converted back)."""
    return SearchPlan([Proposal("vector", knn, partial(vector_score_to_cosine, exact=False))], None,
                      final_is_exact=True)


def choose(query: PersonaQuery, lists: dict[str, dict[str, float]]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """From stage 1's lists (item → score, vector scores already on the cosine scale), the items to
    rescore and their component scores. A lone vector list is rescored whole, then cut to k, as the
    embedded engine rescores every item that HNSW proposes."""
    if set(lists) == {"vector"}:
        return fusion.ranked(lists["vector"]), {}
    if set(lists) == {"fused"}:
        fused = lists["fused"]
        return fusion.ranked(fused)[: query.k], {i: {"fused": s} for i, s in fused.items()}
    vector, bm25 = lists.get("vector", {}), lists.get("bm25", {})
    weights = (query.vector_weight, query.text_weight)
    if query.fusion is Fusion.RRF:
        fused = fusion.rrf([vector, bm25], weights, query.rank_constant)
    else:
        fused = fusion.linear([vector, bm25], weights)
    return fusion.ranked(fused)[: query.k], {i: {"bm25": bm25.get(i, 0.0), "fused": fused[i]} for i in fused}


def rescore_plan(index: str, query: PersonaQuery, score_clause: dict[str, Any],
                 rescore: Callable[[Sequence[str]], Request], keyword_scale: float = 1.0) -> SearchPlan:
    """Rescore mode: BM25 over persona text (filters applied) finds the window, the exact persona score
    reranks it on the server. The script scores 1 + cosine, so the fused score is brought back by
    subtracting `vector_weight`; inner hits in a rescore query are not returned (issue 13's reading of the
    engines), so the best persona comes from the plan's exact request for the chosen items. `keyword_scale`
    brings the cluster's BM25 to the embedded engine's scale inside the query weight."""
    section = dsl.rescore_section(score_clause, query.num_candidates, query.text_weight * keyword_scale,
                                  query.vector_weight)
    body = {"size": query.k, "query": dsl.bool_query([dsl.bm25_clause(query.text or "")], query), "rescore": section,
            "_source": False}
    offset = query.vector_weight
    return SearchPlan([Proposal("fused", Request("POST", f"/{index}/_search", body), lambda s: s - offset)], rescore,
                      keyword_scores=dsl.bm25_of(index, query), keyword_scale=keyword_scale)
