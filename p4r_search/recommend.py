"""History or text → profile → `PersonaQuery` → hits with explanations. No LLM runs here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from .backends.base import Backend
from .encoder import Encoder, TextEncoder
from .errors import ConfigError, NotFoundError
from .models import Hit, MatchedPersona
from .profile import ProfileConfig, combine, history_profile, item_vector, recency_weights
from .query import Mode, PersonaQuery


@dataclass(frozen=True)
class UserInput:
    """Who to recommend for: item ids oldest first, free text, or both."""

    history: tuple[str, ...] = ()
    text: str | None = None

    def __post_init__(self) -> None:
        if not self.history and not (self.text and self.text.strip()):
            raise ConfigError("give a history (--user/--history) or a text (--text)")


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10
    num_candidates: int = 100
    mode: Mode = Mode.KNN
    keywords: str | None = None
    fusion: str = "linear"
    vector_weight: float = 0.5
    text_weight: float = 0.5
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    candidate_ids: tuple[str, ...] | None = None
    include_seen: bool = False


class PersonaScore(BaseModel):
    persona: MatchedPersona
    cosine: float


class HistoryContribution(BaseModel):
    item_id: str
    recency_weight: float
    cosine_to_persona: float


RANK_LIMIT = 1000


class Explanation(BaseModel):
    hit: Hit
    rank: int | None = None  # among unseen items; None when below RANK_LIMIT or already seen
    catalog_size: int
    persona_scores: list[PersonaScore]
    contributions: list[HistoryContribution]


class Recommender:
    def __init__(self, backend: Backend, *, encoder: TextEncoder | None = None, profile: ProfileConfig | None = None):
        self.backend = backend
        self._encoder = encoder
        self.profile_config = profile or ProfileConfig()

    @property
    def encoder(self) -> TextEncoder:
        indexed = self.backend.model_name
        if self._encoder is None:
            self._encoder = Encoder(indexed)  # None (an empty index) means the default model
        if indexed is not None and self._encoder.model_name != indexed:
            raise ConfigError(f"the index was built with model {indexed!r}, not {self._encoder.model_name!r}")
        return self._encoder

    def history_vectors(self, history: Sequence[str]) -> list[np.ndarray]:
        found = self.backend.persona_vectors(list(dict.fromkeys(history)))
        missing = [i for i in dict.fromkeys(history) if i not in found]
        if missing:
            raise NotFoundError(f"items not in the index: {', '.join(missing[:10])}")
        return [item_vector(found[i]) for i in history]

    def profile(self, user: UserInput) -> np.ndarray:
        history = history_profile(self.history_vectors(user.history), self.profile_config) if user.history else None
        text = self.encoder.encode([user.text])[0] if user.text and user.text.strip() else None
        return combine(history, text, self.profile_config)

    def query(self, user: UserInput, options: SearchOptions) -> PersonaQuery:
        exclude = frozenset() if options.include_seen else frozenset(user.history)
        mode = Mode.HYBRID if options.keywords else options.mode
        return PersonaQuery(
            vector=self.profile(user),
            text=options.keywords,
            k=options.k,
            num_candidates=max(options.num_candidates, options.k),
            mode=mode,
            fusion=options.fusion,
            vector_weight=options.vector_weight,
            text_weight=options.text_weight,
            filters=options.filters,
            exclude_ids=exclude,
            candidate_ids=options.candidate_ids,
        )

    def recommend(self, user: UserInput, options: SearchOptions | None = None) -> list[Hit]:
        return self.backend.search(self.query(user, options or SearchOptions()))

    def explain(self, user: UserInput, item_id: str) -> Explanation:
        vectors = self.backend.persona_vectors([item_id]).get(item_id)
        if vectors is None:
            raise NotFoundError(f"item {item_id!r} is not in the index")
        profile = self.profile(user)
        base = PersonaQuery(vector=profile, k=1, mode=Mode.EXACT, candidate_ids=(item_id,))
        hit = self.backend.search(base)[0]
        rank = self._rank(profile, item_id, exclude=frozenset(user.history))
        cosines = vectors @ profile
        personas = self.backend.personas(item_id)
        persona_scores = sorted(
            (PersonaScore(persona=p, cosine=float(c)) for p, c in zip(personas, cosines)), key=lambda s: -s.cosine
        )
        best = vectors[int(np.argmax(cosines))]
        return Explanation(
            hit=hit,
            rank=rank,
            catalog_size=len(self.backend),
            persona_scores=persona_scores,
            contributions=self._contributions(user.history, best),
        )

    def _rank(self, profile: np.ndarray, item_id: str, exclude: frozenset[str]) -> int | None:
        """The item's exact rank among unseen items, or None when it is not in the top RANK_LIMIT."""
        k = max(1, min(len(self.backend), RANK_LIMIT))
        top = self.backend.search(
            PersonaQuery(vector=profile, k=k, num_candidates=k, mode=Mode.EXACT, exclude_ids=exclude, explain=False)
        )
        return next((n for n, h in enumerate(top, start=1) if h.item_id == item_id), None)

    def _contributions(self, history: Sequence[str], persona: np.ndarray) -> list[HistoryContribution]:
        if not history:
            return []
        recent = list(history)[-self.profile_config.last_n :]
        weights = recency_weights(len(recent), self.profile_config.gamma)
        weights = weights / weights.sum()
        vectors = self.history_vectors(recent)
        rows = [
            HistoryContribution(item_id=i, recency_weight=float(w), cosine_to_persona=float(v @ persona))
            for i, w, v in zip(recent, weights, vectors)
        ]
        return sorted(rows, key=lambda r: -r.recency_weight * r.cosine_to_persona)

