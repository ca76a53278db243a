"""`PersonaQuery`: the one neutral query that every backend (embedded, Elasticsearch, OpenSearch) answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .errors import ChoiceError, ConfigError

# Elasticsearch caps num_candidates at 10,000, and both engines cap a search's size at index.max_result_window
# (10,000 by default): checked here, before any request
MAX_WINDOW = 10_000


class Mode(str, Enum):
    KNN = "knn"  # approximate nearest personas (HNSW)
    EXACT = "exact"  # brute-force cosine; with candidate ids this is the paper's rerank
    HYBRID = "hybrid"  # persona vectors fused with BM25 over persona text
    RESCORE = "rescore"  # BM25 over persona text finds a window; exact persona scores rerank it


class Fusion(str, Enum):
    LINEAR = "linear"  # weighted sum of min-max normalised scores
    RRF = "rrf"  # reciprocal rank fusion: sum of weight / (rank_constant + rank)


def parse_choice(enum: type[Enum], value: str | Enum, what: str):
    try:
        return enum(value)
    except ValueError:
        raise ChoiceError(what, value, [m.value for m in enum]) from None


KEYWORD_MODES = (Mode.HYBRID, Mode.RESCORE)


@dataclass(frozen=True)
class PersonaQuery:
    """What to find. Backends translate this; they never reinterpret it.

    filters: item field → accepted values (any of); fields are `categories`, `item_id`, or
    `attributes.<name>`. exclude_ids: items never returned (already seen). candidate_ids: when given,
    only these items are scored, exactly, whatever the mode. Rescore mode: the `num_candidates` best items
    by BM25 over persona text (the window) are reranked by `text_weight * bm25 + vector_weight * cosine`.
    """

    vector: np.ndarray
    text: str | None = None
    k: int = 10
    num_candidates: int = 100
    mode: Mode = Mode.KNN
    fusion: Fusion = Fusion.LINEAR
    vector_weight: float = 0.5
    text_weight: float = 0.5
    rank_constant: int = 60
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exclude_ids: frozenset[str] = frozenset()
    candidate_ids: tuple[str, ...] | None = None
    explain: bool = True

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if vector.size == 0 or not np.isfinite(norm) or norm == 0:
            raise ConfigError("the profile vector is empty, zero or not finite")
        object.__setattr__(self, "vector", vector / norm)
        object.__setattr__(self, "mode", parse_choice(Mode, self.mode, "mode"))
        object.__setattr__(self, "fusion", parse_choice(Fusion, self.fusion, "fusion"))
        object.__setattr__(self, "exclude_ids", frozenset(self.exclude_ids))
        object.__setattr__(self, "filters", {f: tuple(v) for f, v in dict(self.filters).items()})
        if self.candidate_ids is not None:
            object.__setattr__(self, "candidate_ids", tuple(dict.fromkeys(self.candidate_ids)))
        self._check()

    def _check(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.num_candidates < self.k:
            raise ConfigError(f"num_candidates ({self.num_candidates}) must be at least k ({self.k})")
        if self.num_candidates > MAX_WINDOW:
            raise ConfigError(f"num_candidates ({self.num_candidates}) must be at most {MAX_WINDOW:,}: Elasticsearch "
                              "caps num_candidates there, and both engines cap a search's size at "
                              "index.max_result_window (10,000 by default)")
        if self.candidate_ids is not None and len(self.candidate_ids) > MAX_WINDOW:
            raise ConfigError(f"{len(self.candidate_ids):,} candidate ids: at most {MAX_WINDOW:,} can be scored in one "
                              "search (index.max_result_window)")
        has_text = bool(self.text and self.text.strip())
        if self.mode in KEYWORD_MODES and not has_text:
            raise ConfigError(f"{self.mode.value} mode needs keyword text; use mode 'knn' or 'exact' without it")
        if self.mode not in KEYWORD_MODES and has_text:
            raise ConfigError(f"keyword text needs mode 'hybrid' or 'rescore', not {self.mode.value!r}")
        if self.mode is Mode.RESCORE and self.candidate_ids is not None:
            raise ConfigError("rescore mode reranks what the keywords find; candidate ids are scored exactly "
                              "(use mode 'exact' with them)")
        if min(self.vector_weight, self.text_weight) < 0 or self.vector_weight + self.text_weight == 0:
            raise ConfigError("fusion weights must be non-negative and not both zero")
        if self.rank_constant < 1:
            raise ConfigError(f"rank_constant must be at least 1, got {self.rank_constant}")
        for name, values in self.filters.items():
            check_filter_field(name)
            if not values:
                raise ConfigError(f"filter on {name!r} has no values")


FILTER_FIELDS = ("item_id", "categories", "attributes.<name>")


def check_filter_field(name: str) -> None:
    if name in ("item_id", "categories") or (name.startswith("attributes.") and len(name) > len("attributes.")):
        return
    raise ChoiceError("filter field", name, FILTER_FIELDS)


def parse_filters(specs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`field=value` strings (repeatable; values of one field are OR-ed, fields are AND-ed)."""
    filters: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip() or not value:
            raise ConfigError(f"a filter is FIELD=VALUE, got {spec!r}")
        check_filter_field(name.strip())
        filters.setdefault(name.strip(), []).append(value)
    return {name: tuple(values) for name, values in filters.items()}


def values_like(values: list[str], like: str | None) -> list[str]:
    """All `values`, or with `like` those equal to it ignoring case (a "did you mean" for case-sensitive filters)."""
    return values if like is None else [v for v in values if v.casefold() == like.casefold()]


def item_filter_values(item_id: str, categories: Iterable[str], attributes: Mapping[str, object]) -> list[str]:
    """The `field=value` tokens an item can be filtered on; scalar and list attributes are filterable."""
    tokens = [f"item_id={item_id}"] + [f"categories={c}" for c in categories]
    for key, value in attributes.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (str, int, float, bool)):
                tokens.append(f"attributes.{key}={str(v).lower() if isinstance(v, bool) else v}")
    return tokens
