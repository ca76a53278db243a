"""History or text → profile → `PersonaQuery` → hits with explanations. No LLM runs here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel

from .backends.base import Backend
from .encoder import Encoder, TextEncoder
from .errors import ConfigError, NotFoundError
from .fusion import candidate_fusion
from .models import Hit, MatchedPersona
from .profile import (
    ProfileConfig,
    ProfileSource,
    combine,
    history_profile,
    interaction_vector,
    item_vector,
    recency_weights,
)
from .query import Mode, PersonaQuery


@dataclass(frozen=True)
class UserInput:
    """Who to recommend for: item ids oldest first, free text, or both. `reviews` maps history item ids to
    what this user wrote about them (used by the `reviews` and `both` profile sources)."""

    history: tuple[str, ...] = ()
    text: str | None = None
    reviews: Mapping[str, str] = field(default_factory=dict)

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
    candidate_weight: float | None = None  # with candidate_ids in the caller's order: fuse that order in
    include_seen: bool = False

    def __post_init__(self) -> None:
        if self.candidate_weight is None:
            return
        if not 0 <= self.candidate_weight <= 1:
            raise ConfigError(f"the candidate weight must be in [0, 1], got {self.candidate_weight}")
        if not self.candidate_ids:
            raise ConfigError("a candidate weight needs candidates (--candidates), in your ranking's order")
        if self.keywords:
            raise ConfigError("a candidate weight reranks by persona score alone; it cannot take keywords")


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

    def history_vectors(self, history: Sequence[str], reviews: Mapping[str, str] | None = None) -> list[np.ndarray]:
        """One vector per interaction, by the profile source (profile.py)."""
        found = self.backend.persona_vectors(list(dict.fromkeys(history)))
        missing = [i for i in dict.fromkeys(history) if i not in found]
        if missing:
            raise NotFoundError(f"items not in the index: {', '.join(missing[:10])}")
        review_vectors = self._review_vectors(history, reviews or {})
        source = self.profile_config.source
        return [interaction_vector(item_vector(found[i]), review_vectors.get(i), source) for i in history]

    def _review_vectors(self, history: Sequence[str], reviews: Mapping[str, str]) -> dict[str, np.ndarray]:
        if self.profile_config.source is ProfileSource.ITEMS:
            return {}
        wanted = [i for i in dict.fromkeys(history) if (reviews.get(i) or "").strip()]
        return dict(zip(wanted, self.encoder.encode([reviews[i] for i in wanted]))) if wanted else {}

    def profile(self, user: UserInput) -> np.ndarray:
        history = None
        if user.history:
            history = history_profile(self.history_vectors(user.history, user.reviews), self.profile_config)
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
        options = options or SearchOptions()
        if options.candidate_weight is not None:
            return self._rerank_candidates(user, options)
        return self.backend.search(self.query(user, options))

    def _rerank_candidates(self, user: UserInput, options: SearchOptions) -> list[Hit]:
        """The caller's candidates, in the caller's order, fused with their persona scores:
        (1 - w) * rank part + w * min-max persona score (fusion.candidate_fusion), best first."""
        exact = replace(options, mode=Mode.EXACT, k=len(options.candidate_ids), candidate_weight=None)
        hits = {h.item_id: h for h in self.backend.search(self.query(user, exact))}
        order = [i for i in dict.fromkeys(options.candidate_ids) if i in hits]
        if not order:
            return []
        cosines = np.array([[hits[i].score for i in order]])
        fused = candidate_fusion(cosines, options.candidate_weight)[0]
        ranked = sorted(range(len(order)), key=lambda n: -fused[n])  # stable: ties keep the caller's order
        return [hits[order[n]].model_copy(update={
            "score": float(fused[n]),
            "scores": {"cosine": hits[order[n]].score, "candidate_rank": float(n + 1), "fused": float(fused[n])},
        }) for n in ranked[: options.k]]

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
            contributions=self._contributions(user, best),
        )

    def _rank(self, profile: np.ndarray, item_id: str, exclude: frozenset[str]) -> int | None:
        """The item's exact rank among unseen items, or None when it is not in the top RANK_LIMIT."""
        k = max(1, min(len(self.backend), RANK_LIMIT))
        top = self.backend.search(
            PersonaQuery(vector=profile, k=k, num_candidates=k, mode=Mode.EXACT, exclude_ids=exclude, explain=False)
        )
        return next((n for n, h in enumerate(top, start=1) if h.item_id == item_id), None)

    def _contributions(self, user: UserInput, persona: np.ndarray) -> list[HistoryContribution]:
        if not user.history:
            return []
        recent = list(user.history)[-self.profile_config.last_n :]
        weights = recency_weights(len(recent), self.profile_config.gamma)
        weights = weights / weights.sum()
        vectors = self.history_vectors(recent, user.reviews)
        rows = [
            HistoryContribution(item_id=i, recency_weight=float(w), cosine_to_persona=float(v @ persona))
            for i, w, v in zip(recent, weights, vectors)
        ]
        return sorted(rows, key=lambda r: -r.recency_weight * r.cosine_to_persona)

