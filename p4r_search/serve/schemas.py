"""The service's request and response bodies. Responses are the library's models (`Hit`, `Explanation`,
`ItemCard`); a request turns into the library's `UserInput`, `SearchOptions` and `ProfileConfig`, and its
checks are the library's, so the service refuses exactly what `p4r recommend` refuses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import P4RError
from ..events import Event
from ..events.models import EventId
from ..features import Candidate
from ..models import Hit
from ..profile import VISIBLE_PATTERN, ProfileConfig, has_text
from ..query import MAX_WINDOW, check_filter_field
from ..recommend import SearchOptions, candidate_count, idle_options
from .rules import FILTER_FIELDS, SEARCH_RULES, USER_RULES

MAX_TEXT = 10_000  # characters; the encoder reads the first 128 word pieces (~500 characters) anyway
MAX_HISTORY = 100_000
MAX_EVENTS = 1000  # per POST /v1/events


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProfileSettings(_Body):
    """How the history becomes a profile (as --last-n, --gamma, --profile-text-weight, --profile-source)."""

    last_n: int = Field(10, ge=1, le=1000)
    gamma: float = Field(0.65, gt=0, le=1)
    text_weight: float = Field(0.5, ge=0, le=1, description="The weight of `text` when there is a history too.")
    source: Literal["items", "reviews", "both"] = "items"

    def config(self) -> ProfileConfig:
        return ProfileConfig(self.last_n, self.gamma, self.text_weight, source=self.source)


class UserRequest(_Body):
    """Who to recommend for: a `user_id` (its history as of this request: the start-up files and every event
    acknowledged before), or a `history`; a `text`
    alone or with either. `reviews` maps history item ids to the user's own review of them (profile source
    `reviews` or `both`); with `user_id` they default to the user's reviews the service has. The cross-field rules
    are in the JSON Schema (rules.py)."""

    model_config = ConfigDict(json_schema_extra=USER_RULES)

    user_id: str | None = Field(None, min_length=1, max_length=500)
    history: list[str] | None = Field(None, max_length=MAX_HISTORY, description=(
        "Item ids, oldest first; not with `user_id`. The profile uses the last `profile.last_n` the index has "
        "(looked up from the end, 10,000 distinct ids at most); every item of it is excluded as seen."))
    text: str | None = Field(None, max_length=MAX_TEXT, description=(
        "The user's own words, or what they want. Only whitespace, control and format characters (NUL, "
        "zero-width spaces) count as no text."))
    reviews: dict[str, str] | None = Field(None, description=(
        "Item id → the user's review. Profile source `reviews` or `both` with a history needs some; with a "
        "`user_id` the service's store gives them (review events, --reviews), so whether they exist is not in the schema."))
    profile: ProfileSettings = ProfileSettings()

    @model_validator(mode="after")
    def _one_user(self):
        if {"user_id", "history"} <= self.model_fields_set:
            raise ValueError("give user_id or history, not both")
        if not (self.user_id or self.history or has_text(self.text)):
            raise ValueError("give a user_id, a history or a text")
        return self


class RecommendRequest(UserRequest):
    """The search options of `p4r recommend`; `filters` maps a field (`categories`, `item_id`,
    `attributes.NAME`) to accepted values; `candidates` are scored alone, in your order if `candidate_weight`."""

    model_config = ConfigDict(json_schema_extra=SEARCH_RULES)

    k: int = Field(10, ge=1, le=1000)
    mode: Literal["knn", "exact", "rescore"] = "knn"
    keywords: str | None = Field(None, max_length=1000, json_schema_extra={"pattern": VISIBLE_PATTERN}, description=(
        "BM25 over persona text (--query); an empty or blank text is refused. Needed by mode `rescore`, "
        "by `fusion`, `persona_weight` and `keyword_weight`; not with mode `exact` or `candidate_weight`."))
    num_candidates: int = Field(100, ge=1, le=MAX_WINDOW)
    window: int | None = Field(None, ge=1, le=MAX_WINDOW, description="Rescore mode: how many keyword hits to rerank.")
    fusion: Literal["linear", "rrf"] = "linear"
    persona_weight: float = Field(0.5, ge=0)
    keyword_weight: float = Field(0.5, ge=0)
    filters: dict[str, list[str]] = Field(default_factory=dict, json_schema_extra={"propertyNames": FILTER_FIELDS})
    candidates: list[str] | None = Field(None, max_length=MAX_WINDOW)
    candidate_weight: float | None = Field(None, ge=0, le=1)
    candidate_scores: list[float] | None = Field(
        None, max_length=MAX_WINDOW,
        description="Your scores of `candidates`, one per candidate in the same order (a rule the schema cannot "
                    "state: other lengths are refused with 422): fused, min-max scaled, in place of their ranks.")
    include_seen: bool = False

    @field_validator("keywords")
    @classmethod
    def _words(cls, keywords: str | None) -> str | None:
        if keywords is not None and not has_text(keywords):
            raise ValueError("the keywords are empty: give words, or leave them out")
        return keywords

    @model_validator(mode="after")
    def _checked(self):
        for name in self.filters:
            check_filter_field(name)
        if why := idle_options(set(self.model_fields_set), self.keywords, self.mode, str):
            raise ValueError(why)
        self.options()  # SearchOptions' own checks
        return self

    def options(self) -> SearchOptions:
        try:
            return SearchOptions(
                k=self.k, mode=self.mode, keywords=self.keywords, fusion=self.fusion,
                num_candidates=candidate_count(self.mode, self.num_candidates, self.window),
                persona_weight=self.persona_weight, keyword_weight=self.keyword_weight,
                filters={f: tuple(v) for f, v in self.filters.items()},
                candidate_ids=tuple(self.candidates) if self.candidates is not None else None,
                candidate_weight=self.candidate_weight, include_seen=self.include_seen,
                candidate_scores=tuple(self.candidate_scores) if self.candidate_scores is not None else None,
            )
        except P4RError as exc:  # pydantic reports a ValueError with its location
            raise ValueError(str(exc)) from None


class ExplainRequest(UserRequest):
    item_id: str = Field(min_length=1, max_length=500, description="The item to explain for this user.")


class Skipped(BaseModel):
    history: list[str] = Field(description="History items the index lacks, left out of the profile.")
    candidates: list[str] = Field(description="Candidates the index lacks.")


class RecommendResponse(BaseModel):
    hits: list[Hit]
    history: list[str] = Field(description="The history the profile was made from (the last `last_n` count).")
    skipped: Skipped
    why_empty: list[str] = Field(description="When no hit came back: why, in words.")
    generation: int | None = Field(description="The index generation that answered (embedded engine).")
    took_ms: float


class IndexInfo(BaseModel):
    engine: str
    index: str
    model: str | None
    persona_vector: str | None = Field(description="What persona vectors embed: text, evidence or blend.")
    items: int
    personas: int | None
    dim: int | None
    generation: int | None
    opened_at: str
    reload_error: str | None = Field(None, description="Why the newest generation could not be opened, if so.")


class UserSummary(BaseModel):
    user_id: str
    interactions: int


class UserHistory(BaseModel):
    user_id: str
    history: list[str] = Field(description="Item ids, oldest first: the start-up files and every event since.")
    reviewed: list[str] = Field(description="Items the user wrote a review of (profile source reviews or both).")


class EventsRequest(_Body):
    """A batch of events, written in one transaction: all of it, or (on any error) none of it."""

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class FeatureCandidate(Candidate):
    item_id: EventId


class FeaturesRequest(UserRequest):
    """As `p4r features`: p4r's features of each candidate for this user, for a team's own ranker."""

    candidates: list[FeatureCandidate] = Field(min_length=1, max_length=MAX_WINDOW, description=(
        "The team's candidates, in its order; one row each. An item the index lacks gets in_index 0."))
