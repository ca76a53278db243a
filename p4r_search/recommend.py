"""History or text → profile → `PersonaQuery` → hits with explanations. No LLM runs here."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel

from .backends.base import Backend
from .encoder import Encoder, TextEncoder
from .errors import ConfigError, NotFoundError
from .fusion import candidate_fusion, candidate_score_fusion
from .history import RecentHistory, recent_history, seen_ids
from .models import Hit, MatchedPersona
from .profile import (
    ProfileConfig,
    ProfileSource,
    combine,
    has_text,
    history_profile,
    interaction_vector,
    item_vector,
    recency_weights,
)
from .query import KEYWORD_MODES, Mode, PersonaQuery, parse_choice


@dataclass(frozen=True)
class UserInput:
    """Who to recommend for: item ids oldest first, free text, or both. `reviews` maps history item ids to
    what this user wrote about them (used by the `reviews` and `both` profile sources)."""

    history: tuple[str, ...] = ()
    text: str | None = None
    reviews: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.history and not has_text(self.text):
            raise ConfigError("give a history (--user/--history) or a text (--text)")


@dataclass(frozen=True)
class SearchOptions:
    """How to search. `keywords` (BM25 over persona text) need mode `knn` (then fused with the profile: hybrid)
    or `rescore` (BM25 finds a window of `num_candidates` items, the persona score reranks it: `keyword_weight
    * bm25 + persona_weight * cosine`). `fusion` and the two weights only act with keywords."""

    k: int = 10
    num_candidates: int = 100
    mode: Mode = Mode.KNN
    keywords: str | None = None
    fusion: str = "linear"
    persona_weight: float = 0.5
    keyword_weight: float = 0.5
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    candidate_ids: tuple[str, ...] | None = None
    candidate_weight: float | None = None  # with candidate_ids in the caller's order: fuse that order in
    candidate_scores: tuple[float, ...] | None = None  # the caller's scores of candidate_ids: fused instead of ranks
    include_seen: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_choice(Mode, self.mode, "mode"))
        if self.keywords is not None and not has_text(self.keywords):
            raise ConfigError("the keywords (--query) are empty: give words, or leave them out")
        if self.keywords and self.mode is Mode.EXACT:
            raise ConfigError("keywords need mode 'knn' (fused with the persona score) or 'rescore'; "
                              "mode 'exact' scores personas alone")
        if not self.keywords and self.mode in KEYWORD_MODES:
            raise ConfigError(f"mode {self.mode.value!r} needs keywords (--query)")
        if self.candidate_scores is not None:
            self._check_candidate_scores()
        if self.candidate_weight is None:
            return
        if not 0 <= self.candidate_weight <= 1:
            raise ConfigError(f"the candidate weight must be in [0, 1], got {self.candidate_weight}")
        if not self.candidate_ids:
            raise ConfigError("a candidate weight needs candidates (--candidates), in your ranking's order")
        if self.keywords:
            raise ConfigError("a candidate weight reranks by persona score alone; it cannot take keywords")

    def _check_candidate_scores(self) -> None:
        scores = tuple(float(x) for x in self.candidate_scores)
        object.__setattr__(self, "candidate_scores", scores)
        if self.candidate_weight is None:
            raise ConfigError("candidate scores are fused with the persona score: they need a candidate weight")
        if not self.candidate_ids or len(scores) != len(self.candidate_ids):
            raise ConfigError(f"{len(scores)} candidate score(s) for {len(self.candidate_ids or ())} candidate(s): "
                              "give one score per candidate, in the same order")
        if not all(math.isfinite(x) for x in scores):
            raise ConfigError("candidate scores must be finite numbers")

    @property
    def query_mode(self) -> Mode:
        return Mode.HYBRID if self.keywords and self.mode is Mode.KNN else self.mode


DEFAULT_WINDOW = 50  # rescore mode: keyword hits the persona score reranks, unless a window is given


def candidate_count(mode: str, num_candidates: int, window: int | None) -> int:
    """`SearchOptions.num_candidates` from the caller's options: the rescore window in rescore mode, else the
    knn width (callers refuse the one that does not apply: `idle_options`)."""
    return (window or DEFAULT_WINDOW) if mode == "rescore" else num_candidates


def idle_options(given: set[str], keywords: str | None, mode: str, spell: Callable[[str], str]) -> str | None:
    """Why search options that the caller set would do nothing, or None. `given`: the names set explicitly
    (`window` is the rescore window, `num_candidates` the knn width); `spell` writes a name as the caller does."""
    query, rescore = spell("keywords"), f"{spell('mode')} rescore"
    if not keywords and (idle := sorted(given & {"fusion", "persona_weight", "keyword_weight"})):
        what = f"{query} (keywords)" if query != "keywords" else query
        return f"{', '.join(map(spell, idle))} only act with {what}; without it the persona score alone ranks"
    if mode == "rescore" and "num_candidates" in given:
        return (f"{rescore} reranks a window of {query}'s hits: set its size with {spell('window')}, "
                f"not {spell('num_candidates')}")
    if mode == "rescore" and "fusion" in given:
        return (f"{spell('fusion')} is for {spell('mode')} knn with {query}; rescore adds the weighted scores "
                f"({spell('keyword_weight')}, {spell('persona_weight')})")
    if mode != "rescore" and "window" in given:
        return f"{spell('window')} is the rescore window: it needs {rescore} (and {query})"
    return None


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
    catalog_size: int  # every item in the index; `seen` of them (the user's history) are not ranked
    seen: int = 0
    in_history: bool = False  # the item is in the user's history: excluded as seen, so not ranked
    persona_scores: list[PersonaScore]
    contributions: list[HistoryContribution]
    skipped_history: list[str] = []  # history items the index lacks, left out of the profile


@dataclass(frozen=True)
class Skipped:
    """Ids the index lacks, left out of a request: history items (the profile uses the rest) and candidates."""

    history: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """`Recommender.recommend_with_report`: the hits, what was skipped, why the hits are empty if they are, and
    the history items the profile was made from (the last `last_n` the index has)."""

    hits: list[Hit]
    skipped: Skipped = Skipped()
    why_empty: tuple[str, ...] = ()
    history: tuple[str, ...] = ()


class Recommender:
    def __init__(self, backend: Backend, *, encoder: TextEncoder | None = None, profile: ProfileConfig | None = None,
                 checkpoint: Callable[[str], None] | None = None):
        """`checkpoint(stage)` is called between stages of a request (history lookup, profile, search, diagnose)
        and may raise to stop it, e.g. past a deadline."""
        self.backend = backend
        self._encoder = encoder
        self.profile_config = profile or ProfileConfig()
        self._checkpoint = checkpoint or (lambda stage: None)

    @property
    def encoder(self) -> TextEncoder:
        indexed = self.backend.model_name
        if self._encoder is None:
            self._encoder = Encoder(indexed)  # None (an empty index) means the default model
        if indexed is not None and self._encoder.model_name != indexed:
            raise ConfigError(f"the index was built with model {indexed!r}, not {self._encoder.model_name!r}")
        return self._encoder

    def history_vectors(self, history: Sequence[str], reviews: Mapping[str, str] | None = None,
                        found: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """One vector per interaction, by the profile source (profile.py); items the index lacks are skipped
        (`known_history` says which). `found`: the history's persona vectors, where the caller has them."""
        if found is None:
            found = self.backend.persona_vectors(list(dict.fromkeys(history)))
        history = [i for i in history if i in found]
        review_vectors = self._review_vectors(history, reviews or {})
        source = self.profile_config.source
        return [interaction_vector(item_vector(found[i]), review_vectors.get(i), source) for i in history]

    def _review_vectors(self, history: Sequence[str], reviews: Mapping[str, str]) -> dict[str, np.ndarray]:
        if self.profile_config.source is ProfileSource.ITEMS:
            return {}
        wanted = [i for i in dict.fromkeys(history) if has_text(reviews.get(i))]
        return dict(zip(wanted, self.encoder.encode([reviews[i] for i in wanted]))) if wanted else {}

    def recent_history(self, history: Sequence[str]) -> RecentHistory:
        """The history's recent end that makes the profile (history.recent_history)."""
        return recent_history(self.backend, history, self.profile_config.last_n, self._checkpoint)

    def profile(self, user: UserInput, recent: RecentHistory | None = None) -> np.ndarray:
        history = None
        if user.history:
            recent = recent or self.recent_history(user.history)
            if not recent.kept and not has_text(user.text):
                raise NotFoundError(no_history_message(recent.examined))
            vectors = self.history_vectors(recent.kept, user.reviews, recent.found)
            history = history_profile(vectors, self.profile_config) if vectors else None
        self._checkpoint("profile")
        text = self.encoder.encode([user.text])[0] if has_text(user.text) else None
        return combine(history, text, self.profile_config)

    def query(self, user: UserInput, options: SearchOptions, recent: RecentHistory | None = None) -> PersonaQuery:
        if user.history and recent is None:
            recent = self.recent_history(user.history)
        return PersonaQuery(
            vector=self.profile(user, recent),
            text=options.keywords,
            k=options.k,
            num_candidates=max(options.num_candidates, options.k),
            mode=options.query_mode,
            fusion=options.fusion,
            vector_weight=options.persona_weight,
            text_weight=options.keyword_weight,
            filters=options.filters,
            exclude_ids=frozenset() if options.include_seen else seen_ids(user, recent),
            candidate_ids=options.candidate_ids,
        )

    def recommend(self, user: UserInput, options: SearchOptions | None = None) -> list[Hit]:
        return self._recommend(user, options or SearchOptions(), None)

    def _recommend(self, user: UserInput, options: SearchOptions, recent: RecentHistory | None) -> list[Hit]:
        if options.candidate_weight is not None:
            return self._rerank_candidates(user, options, recent)
        query = self.query(user, options, recent)
        self._checkpoint("search")
        return self.backend.search(query)

    def recommend_with_report(self, user: UserInput, options: SearchOptions | None = None, *,
                              diagnose: bool = True) -> Recommendation:
        """`recommend`, saying what the index lacked (skipped history items and candidates) and, when nothing
        came back and `diagnose`, why (diagnose.why_empty: a few counts, no vectors)."""
        options = options or SearchOptions()
        # the recent history is looked up once: it says what is skipped and makes the profile
        recent = self.recent_history(user.history) if user.history else RecentHistory()
        if user.history and not recent.kept and not has_text(user.text):
            raise NotFoundError(no_history_message(recent.examined))
        candidates = ()
        if options.candidate_ids:
            present = self._present(options.candidate_ids)
            candidates = tuple(i for i in dict.fromkeys(options.candidate_ids) if i not in present)
        hits = self._recommend(user, options, recent)
        why: tuple[str, ...] = ()
        if not hits and diagnose:
            from .diagnose import why_empty

            self._checkpoint("diagnose")
            exclude = frozenset() if options.include_seen else seen_ids(user, recent)
            why = tuple(why_empty(self.backend, filters=options.filters, candidate_ids=options.candidate_ids,
                                  exclude_ids=exclude))
        return Recommendation(hits, Skipped(recent.skipped, candidates), why, recent.kept)

    def _present(self, item_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(item_ids))
        existing = getattr(self.backend, "existing_ids", None)  # cheaper than the vectors, where a backend has it
        return set(existing(ids)) if existing is not None else set(self.backend.persona_vectors(ids))

    def _rerank_candidates(self, user: UserInput, options: SearchOptions,
                           recent: RecentHistory | None = None) -> list[Hit]:
        """The caller's candidates, in the caller's order, fused with their persona scores:
        (1 - w) * rank part + w * min-max persona score (fusion.candidate_fusion), best first; with the
        caller's scores, their min-max in place of the rank part (fusion.candidate_score_fusion)."""
        exact = replace(options, mode=Mode.EXACT, k=len(options.candidate_ids), candidate_weight=None,
                        candidate_scores=None)
        query = self.query(user, exact, recent)
        self._checkpoint("search")
        hits = {h.item_id: h for h in self.backend.search(query)}
        given: dict[str, float | None] = {}
        for item_id, score in zip(options.candidate_ids, options.candidate_scores or [None] * len(options.candidate_ids)):
            given.setdefault(item_id, score)
        order = [i for i in dict.fromkeys(options.candidate_ids) if i in hits]
        if not order:
            return []
        cosines = np.array([[hits[i].score for i in order]])
        if options.candidate_scores is None:
            fused = candidate_fusion(cosines, options.candidate_weight)[0]
        else:
            fused = candidate_score_fusion(np.array([[given[i] for i in order]]), cosines, options.candidate_weight)[0]
        ranked = sorted(range(len(order)), key=lambda n: -fused[n])  # stable: ties keep the caller's order
        return [hits[order[n]].model_copy(update={
            "score": float(fused[n]),
            "scores": {"cosine": hits[order[n]].score, "candidate_rank": float(n + 1),
                       **({"candidate_score": float(given[order[n]])} if options.candidate_scores else {}),
                       "fused": float(fused[n])},
        }) for n in ranked[: options.k]]

    def explain(self, user: UserInput, item_id: str) -> Explanation:
        vectors = self.backend.persona_vectors([item_id]).get(item_id)
        if vectors is None:
            raise NotFoundError(f"item {item_id!r} is not in the index")
        recent = self.recent_history(user.history) if user.history else RecentHistory()
        profile = self.profile(user, recent)
        self._checkpoint("search")
        base = PersonaQuery(vector=profile, k=1, mode=Mode.EXACT, candidate_ids=(item_id,))
        hit = self.backend.search(base)[0]
        exclude = seen_ids(user, recent)
        unexamined = exclude - recent.found.keys()
        seen = len(recent.found) + (len(self._present(list(unexamined))) if unexamined else 0)
        rank = None if item_id in exclude else self._rank(profile, item_id, exclude=exclude)
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
            seen=seen,
            in_history=item_id in exclude,
            persona_scores=persona_scores,
            contributions=self._contributions(recent, user.reviews, best),
            skipped_history=list(recent.skipped),
        )

    def _rank(self, profile: np.ndarray, item_id: str, exclude: frozenset[str]) -> int | None:
        """The item's exact rank among unseen items, or None when it is not in the top RANK_LIMIT."""
        if (rank_of := getattr(self.backend, "rank_of", None)) is not None:  # one scan, where a backend can
            rank = rank_of(profile, item_id, exclude)
            return rank if rank is not None and rank <= RANK_LIMIT else None
        k = max(1, min(len(self.backend), RANK_LIMIT))
        top = self.backend.search(
            PersonaQuery(vector=profile, k=k, num_candidates=k, mode=Mode.EXACT, exclude_ids=exclude, explain=False)
        )
        return next((n for n, h in enumerate(top, start=1) if h.item_id == item_id), None)

    def _contributions(self, recent: RecentHistory, reviews: Mapping[str, str],
                       persona: np.ndarray) -> list[HistoryContribution]:
        if not recent.kept:
            return []
        weights = recency_weights(len(recent.kept), self.profile_config.gamma)
        weights = weights / weights.sum()
        vectors = self.history_vectors(recent.kept, reviews, recent.found)
        rows = [
            HistoryContribution(item_id=i, recency_weight=float(w), cosine_to_persona=float(v @ persona))
            for i, w, v in zip(recent.kept, weights, vectors)
        ]
        return sorted(rows, key=lambda r: -r.recency_weight * r.cosine_to_persona)


def shown_id(item_id: str, width: int = 60) -> str:
    """An id as a message may repeat it: cut to `width` characters, with its length (an id may be megabytes)."""
    return item_id if len(item_id) <= width else f"{item_id[:width]}… ({len(item_id):,} characters)"


def shown_ids(ids: Sequence[str], limit: int = 10) -> str:
    """The first `limit` ids, each cut (shown_id), and how many more."""
    return ", ".join(map(shown_id, ids[:limit])) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def no_history_message(history: Sequence[str]) -> str:
    ids = list(dict.fromkeys(history))
    return (f"none of the history's {len(ids)} item(s) is in the index ({shown_ids(ids)}): nothing to make a profile from; "
            "give items that are indexed, or a text (--text)")
