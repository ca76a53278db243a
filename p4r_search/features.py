"""Persona scores as features for a team's own learning-to-rank: one row per (user, candidate).

No LLM runs here. For each candidate the profile is the one `p4r recommend` makes (`Recommender.profile`,
profile.py) and the features are, in this fixed order (SVMlight ids in `FEATURE_IDS`; id 1 is the team's own
score, `TEAM_SCORE_ID`, written when the candidates line gives one):

- `in_index`: 1 when the index holds the candidate. A candidate it lacks is not an error: its row has
  `in_index` 0 and every other p4r feature 0.
- `best_cosine`: the cosine of the profile and the candidate's best-matching persona, the score `p4r recommend`
  gives it (an exact search over the candidates, as `--candidates` does).
- `best_support`: that persona's support (the share of the item's reviews behind it).
- `best_rating`, `has_rating`: the index stores no rating, for a persona or an item. With `ratings` (review id
  → rating, e.g. from the reviews file the personas were made from), `best_rating` is the mean rating of the
  matched persona's evidence reviews found there and `has_rating` 1; otherwise both are 0.
- `second_cosine`: the cosine of the second-best persona; -1 (the lowest cosine) for an item with one persona.
- `single_cosine`: the cosine of the profile and the item as one vector: the normalised mean of its persona
  vectors, the vector a history item becomes in a profile (`profile.item_vector`).
- `bm25`: BM25 of the user's words (their text and their own reviews of the profile's recent history items)
  against the item's persona text, the best of its personas (as the hybrid search scores keywords); 0 for an
  item none of the words matches, and for every item when the user has no words.
- `n_personas`: how many personas the item has.

Every value is finite. Clusters are served by the same backend calls (an exact search, a hybrid search and
`persona_vectors`); the rating needs the evidence ids, read from the embedded index's payloads or the cluster
document's `personas.evidence_review_ids`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .backends.base import Backend
from .encoder import TextEncoder
from .history import RecentHistory
from .models import Id
from .profile import ProfileConfig, has_text, item_vector
from .query import MAX_WINDOW, Mode, PersonaQuery
from .recommend import Recommender, UserInput

FEATURES: tuple[str, ...] = ("in_index", "best_cosine", "best_support", "best_rating", "has_rating", "second_cosine",
                             "single_cosine", "bm25", "n_personas")
TEAM_SCORE_ID = 1
FEATURE_IDS: dict[str, int] = {name: n for n, name in enumerate(FEATURES, start=TEAM_SCORE_ID + 1)}
NO_SECOND = -1.0  # second_cosine of an item with a single persona

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Candidate(_Strict):
    item_id: Id
    score: FiniteFloat | None = Field(default=None, description="The team's own score of this candidate.")
    label: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Relevance grade, for training.")


class CandidatesLine(_Strict):
    """One line of `p4r features --candidates`: a user (an id looked up in the history store, or a history
    and/or a text, as `p4r recommend` takes one) and their candidates, in the team's order."""

    user_id: Id | None = None
    history: list[Id] | None = Field(default=None, description="Item ids the user interacted with, oldest first.")
    text: str | None = None
    reviews: dict[Id, str] = Field(default_factory=dict, description="With `history`: item id → the user's review.")
    candidates: list[Candidate] = Field(min_length=1, max_length=MAX_WINDOW)

    @model_validator(mode="after")
    def _one_user(self) -> CandidatesLine:
        if self.user_id is not None and self.history is not None:
            raise ValueError("give user_id or history, not both")
        if self.user_id is None and not self.history and not has_text(self.text):
            raise ValueError("give a user_id, a non-empty history or a text")
        if self.reviews and self.history is None:
            raise ValueError("reviews go with a history (a user_id's reviews come from the history store)")
        return self


class FeatureRow(BaseModel):
    """One output row: who, which candidate, the query id (1, 2, … per candidates line), the label and the
    team's score as given, the matched persona, and p4r's features by name, in `FEATURES` order."""

    model_config = ConfigDict(frozen=True)

    user_id: str | None
    item_id: str
    qid: int
    label: int | None = None
    team_score: float | None = None
    persona_id: str | None = None
    features: dict[str, float]


@dataclass(frozen=True)
class ItemFeatures:
    values: dict[str, float]
    persona_id: str | None = None


def absent() -> ItemFeatures:
    """A candidate the index lacks: in_index 0 and zeros."""
    return ItemFeatures(dict.fromkeys(FEATURES, 0.0))


def user_words(user: UserInput, recent: Sequence[str], last_n: int) -> str | None:
    """The user's text and their reviews of the last `last_n` items of the profile's history, newest first."""
    wanted = list(dict.fromkeys(reversed(recent or user.history)))
    reviews = [user.reviews[i] for i in wanted if has_text(user.reviews.get(i))][:last_n]
    words = " ".join(t for t in [user.text or "", *reviews] if has_text(t))
    return words if has_text(words) else None


class FeatureExtractor:
    """`FeatureExtractor(backend, encoder, profile).rows(user, candidates, user_id=..., qid=...)` → rows."""

    def __init__(self, backend: Backend, encoder: TextEncoder | None = None, profile: ProfileConfig | None = None,
                 ratings: Mapping[str, float] | None = None):
        self.backend = backend
        self.recommender = Recommender(backend, encoder=encoder, profile=profile)
        self.ratings = ratings

    @classmethod
    def of(cls, recommender: Recommender, ratings: Mapping[str, float] | None = None) -> FeatureExtractor:
        """With a recommender's backend, encoder (loaded only when a profile needs it) and profile settings."""
        extractor = cls(recommender.backend, profile=recommender.profile_config, ratings=ratings)
        extractor.recommender = recommender
        return extractor

    def rows(self, user: UserInput, candidates: Sequence[Candidate], *, user_id: str | None = None,
             qid: int = 1) -> list[FeatureRow]:
        """One row per candidate, in the order given (a repeated candidate repeats its row)."""
        found = self.features(user, [c.item_id for c in candidates])
        return [FeatureRow(user_id=user_id, item_id=c.item_id, qid=qid, label=c.label, team_score=c.score,
                           persona_id=found[c.item_id].persona_id, features=found[c.item_id].values)
                for c in candidates]

    def features(self, user: UserInput, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """The features of each distinct candidate; NotFoundError when no profile can be made (as recommend)."""
        rec = self.recommender
        recent = rec.recent_history(user.history) if user.history else RecentHistory()
        profile = PersonaQuery(vector=rec.profile(user, recent), mode=Mode.EXACT).vector  # as a search has it
        ids = list(dict.fromkeys(item_ids))
        vectors = self.backend.persona_vectors(ids) if ids else {}
        known = tuple(i for i in ids if i in vectors)
        out = {i: absent() for i in ids}
        if not known:
            return out
        hits = {h.item_id: h for h in self.backend.search(PersonaQuery(
            vector=profile, k=len(known), num_candidates=len(known), mode=Mode.EXACT, candidate_ids=known))}
        bm25 = self._bm25(profile, user_words(user, recent.kept, rec.profile_config.last_n), known)
        for item_id in known:
            hit = hits.get(item_id)
            if hit is None:  # the index lost it between the two requests: as unknown
                continue
            cosines = np.sort(vectors[item_id] @ profile)[::-1]
            persona_id = hit.persona.persona_id if hit.persona else None
            rating = self._rating(item_id, persona_id)
            out[item_id] = ItemFeatures({
                "in_index": 1.0,
                "best_cosine": float(hit.score),
                "best_support": float(hit.persona.support) if hit.persona else 0.0,
                "best_rating": rating if rating is not None else 0.0,
                "has_rating": 0.0 if rating is None else 1.0,
                "second_cosine": min(float(cosines[1]), float(hit.score)) if len(cosines) > 1 else NO_SECOND,
                "single_cosine": float(item_vector(vectors[item_id]) @ profile),
                "bm25": bm25.get(item_id, 0.0),
                "n_personas": float(len(cosines)),
            }, persona_id)
        return {i: _finite(f) for i, f in out.items()}

    def _bm25(self, profile: np.ndarray, words: str | None, known: tuple[str, ...]) -> dict[str, float]:
        """The best BM25 of each candidate's personas for the words: the `bm25` part of a hybrid search over
        the candidates (every candidate is in it, by its cosine; the ones the words miss have 0)."""
        if words is None:
            return {}
        query = PersonaQuery(vector=profile, text=words, k=len(known), num_candidates=len(known), mode=Mode.HYBRID,
                             candidate_ids=known, explain=False)
        return {h.item_id: float(h.scores.get("bm25", 0.0)) for h in self.backend.search(query)}

    def _rating(self, item_id: str, persona_id: str | None) -> float | None:
        """The mean rating of the matched persona's evidence reviews that `ratings` has; None without them."""
        if not self.ratings or persona_id is None:
            return None
        evidence = evidence_ids(self.backend, item_id).get(persona_id, [])
        known = [self.ratings[r] for r in evidence if r in self.ratings]
        return float(np.mean(known)) if known else None


def evidence_ids(backend: Backend, item_id: str) -> dict[str, list[str]]:
    """Persona id → its evidence review ids, as the index stores them (embedded payloads, or a cluster
    document's `personas`); empty when the backend cannot say."""
    vectors = getattr(backend, "vectors", None)  # the embedded engine's vector cache holds the payloads
    if callable(vectors):
        cache = vectors()
        personas = [] if cache is None else [json.loads(p)["persona"] for p in cache.item_payloads(item_id)]
    elif (source := getattr(backend, "_item_source", None)) is not None:
        personas = source(item_id).get("personas") or []
    else:
        return {}
    return {p["persona_id"]: list(p.get("evidence_review_ids") or []) for p in personas}


def _finite(found: ItemFeatures) -> ItemFeatures:
    bad = [name for name, value in found.values.items() if not math.isfinite(value)]
    if bad:  # the stored vectors are checked on the way (scoring._cosines); this guards the writers' promise
        raise ValueError(f"non-finite feature(s) {', '.join(bad)}")
    return found
