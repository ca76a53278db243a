"""The service without HTTP: requests in, library models out. Every method is blocking and thread-safe;
the app runs them on its worker threads."""

from __future__ import annotations

import time

from ..errors import ConfigError, HistoryStoreError, NotFoundError
from ..events import EventBatchResult, HistoryStore
from ..features import FeatureExtractor, FeatureRow
from ..recommend import Explanation, Recommender, UserInput, shown_id
from .limits import check_deadline
from .schemas import (
    EventsRequest,
    ExplainRequest,
    FeaturesRequest,
    IndexInfo,
    RecommendRequest,
    RecommendResponse,
    Skipped,
    UserHistory,
    UserRequest,
    UserSummary,
)
from .state import ServedIndex, SharedEncoder, Snapshot


class Service:
    """`histories`: the users' durable history, read at every request, so an event counts at once."""

    def __init__(self, index: ServedIndex, encoder: SharedEncoder, histories: HistoryStore | None = None,
                 engine: str = "embedded"):
        self.index = index
        self.encoder = encoder
        self.histories = histories
        self.engine = engine

    def _store(self) -> HistoryStore:
        if self.histories is None:
            raise HistoryStoreError("this service has no history store")
        return self.histories

    def _profile_of(self, user_id: str) -> tuple[tuple[str, ...], dict[str, str]]:
        if self.histories is None:
            raise NotFoundError(f"user {shown_id(user_id)!r} is unknown: this service has no history store")
        return self.histories.profile_of(user_id)

    def _recommender(self, snapshot: Snapshot, request: UserRequest) -> Recommender:
        return Recommender(snapshot.backend, encoder=self.encoder, profile=request.profile.config(),
                           checkpoint=check_deadline)

    def _user(self, request: UserRequest):
        history = tuple(request.history or ())
        reviews = dict(request.reviews or {})
        if request.user_id:
            history, own = self._profile_of(request.user_id)
            if request.reviews is None:
                reviews = own
        if request.profile.source != "items" and history and not reviews:
            raise ConfigError(f"profile source {request.profile.source!r} needs the user's own reviews: send "
                              "`reviews` (item id → text), or a user_id whose reviews the service has (review "
                              "events, or --reviews at start)")
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

    def features(self, request: FeaturesRequest) -> list[FeatureRow]:
        extractor = FeatureExtractor.of(self._recommender(self.index.current, request))
        return extractor.rows(self._user(request), request.candidates, user_id=request.user_id)

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
        if self.histories is None:
            return []
        return [UserSummary(user_id=u, interactions=n) for u, n in self.histories.user_list(limit)]

    def user(self, user_id: str) -> UserHistory:
        history, reviews = self._profile_of(user_id)
        return UserHistory(user_id=user_id, history=list(history), reviewed=sorted(reviews))

    def add_events(self, request: EventsRequest) -> EventBatchResult:
        return self._store().add(request.events)
