"""The service without HTTP: requests in, library models out. Every method is blocking and thread-safe;
the app runs them on its worker threads."""

from __future__ import annotations

import time

from ..errors import ConfigError, NotFoundError
from ..recommend import Explanation, Recommender, UserInput, shown_id
from .limits import check_deadline
from .schemas import (
    ExplainRequest,
    IndexInfo,
    RecommendRequest,
    RecommendResponse,
    Skipped,
    UserHistory,
    UserRequest,
    UserSummary,
)
from .state import ServedIndex, SharedEncoder, Snapshot, Users


class Service:
    def __init__(self, index: ServedIndex, encoder: SharedEncoder, users: Users | None = None, engine: str = "embedded"):
        self.index = index
        self.encoder = encoder
        self.users = users or Users()
        self.engine = engine

    def _recommender(self, snapshot: Snapshot, request: UserRequest) -> Recommender:
        return Recommender(snapshot.backend, encoder=self.encoder, profile=request.profile.config(),
                           checkpoint=check_deadline)

    def _user(self, request: UserRequest):
        history = tuple(request.history or ())
        reviews = dict(request.reviews or {})
        if request.user_id:
            history = self.users.history(request.user_id)
            if request.reviews is None:
                reviews = self.users.reviews.get(request.user_id, {})
        if request.profile.source != "items" and history and not reviews:
            raise ConfigError(f"profile source {request.profile.source!r} needs the user's own reviews: send "
                              "`reviews` (item id → text), or a user_id with the service started with --reviews")
        return UserInput(history=history, text=request.text, reviews=reviews)

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        started = time.perf_counter()
        snapshot = self.index.current
        user = self._user(request)
        report = self._recommender(snapshot, request).recommend_with_report(user, request.options())
        return RecommendResponse(
            hits=report.hits, history=list(report.history),
            skipped=Skipped(history=list(report.skipped.history), candidates=list(report.skipped.candidates)),
            why_empty=list(report.why_empty), generation=snapshot.generation,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def explain(self, request: ExplainRequest) -> Explanation:
        snapshot = self.index.current
        return self._recommender(snapshot, request).explain(self._user(request), request.item_id)

    def item(self, item_id: str):
        try:
            return self.index.current.backend.item_card(item_id)
        except NotFoundError:  # the backend's message names the index's folder
            raise NotFoundError(f"item {shown_id(item_id)!r} is not in the index") from None

    def info(self) -> IndexInfo:
        snapshot = self.index.current
        backend = snapshot.backend
        meta = getattr(backend, "meta", None)
        cache = backend.vectors() if hasattr(backend, "vectors") else None
        return IndexInfo(
            engine=self.engine, index=self.index.describe, model=backend.model_name,
            persona_vector=getattr(meta, "persona_vector", None), items=len(backend),
            personas=len(cache) if cache is not None else None, dim=getattr(meta, "dim", None),
            generation=snapshot.generation, opened_at=snapshot.opened_at, reload_error=self.index.reload_error,
        )

    def user_list(self, limit: int) -> list[UserSummary]:
        ranked = sorted(self.users.histories.items(), key=lambda u: (-len(u[1]), u[0]))[:limit]
        return [UserSummary(user_id=u, interactions=len(h)) for u, h in ranked]

    def user(self, user_id: str) -> UserHistory:
        return UserHistory(user_id=user_id, history=list(self.users.history(user_id)))
