"""The cross-field rules of the request bodies, as JSON Schema, so the OpenAPI document says which bodies are
valid: the same rules the request models (schemas.py) and the library (`idle_options`, `SearchOptions`)
apply. What JSON Schema cannot say (one candidate score per candidate; whether a user has reviews on file)
is in the fields' descriptions. Each rule is one `anyOf` of the cases it allows, few of them: a generator
expands the product of the `anyOf`s."""

from __future__ import annotations

from ..models import NON_BLANK_PATTERN
from ..profile import VISIBLE_PATTERN


def _given(*names: str, **values: dict) -> dict:
    """A schema matching bodies that have these fields (null included), the named ones matching `values`."""
    return {"required": sorted({*names, *values}), "properties": values} if values else {"required": list(names)}


def _absent(*names: str) -> dict:
    return {"allOf": [{"not": {"required": [name]}} for name in names]} if len(names) > 1 else \
        {"not": {"required": list(names)}}


def _all(*schemas: dict) -> dict:
    return {"allOf": list(schemas)}


_STRING, _NUMBER, _ARRAY = {"type": "string"}, {"type": "number"}, {"type": "array"}
_VISIBLE_TEXT = _given(text={"type": "string", "pattern": VISIBLE_PATTERN})
_KEYWORDS = _given(keywords=_STRING)  # keywords that count: a string, with a visible character (its pattern)
_NO_KEYWORDS = {"not": _KEYWORDS}
_SOURCES_WITH_REVIEWS = {"required": ["source"], "properties": {"source": {"enum": ["reviews", "both"]}}}

USER_RULES = {
    "anyOf": [  # someone to recommend for, and not both a user_id and a history
        _all(_given(user_id=_STRING), _absent("history")),
        _all(_given(history={"type": "array", "minItems": 1}), _absent("user_id")),
        _all(_VISIBLE_TEXT, _absent("user_id")),
        _all(_VISIBLE_TEXT, _absent("history")),
    ],
    "allOf": [{"anyOf": [  # the user's own reviews, for a history and a profile source that reads them
        {"not": _given(profile=_SOURCES_WITH_REVIEWS)},
        {"not": _given(history={"type": "array", "minItems": 1})},
        _given(reviews={"type": "object", "minProperties": 1}),
    ]}],
}

_MODES = {"anyOf": [  # what each mode takes (no mode: knn)
    _all(_absent("window"), {"anyOf": [_absent("mode"), _given(mode={"const": "knn"})]}),
    _all(_absent("window"), _given(mode={"const": "exact"}), _NO_KEYWORDS),
    _all(_given(mode={"const": "rescore"}), _KEYWORDS, _absent("num_candidates", "fusion"),
         {"not": _given(candidates=_ARRAY)}),
]}
_FUSION = {"anyOf": [  # fusion and its weights act with keywords only, and the weights are not both 0
    _all(_KEYWORDS, {"not": _given(persona_weight={"const": 0}, keyword_weight={"const": 0})}),
    _absent("fusion", "persona_weight", "keyword_weight"),
]}
_CANDIDATE_FUSION = {"anyOf": [  # a candidate weight needs candidates, no keywords; scores need the weight
    _all({"not": _given(candidate_weight=_NUMBER)}, {"not": _given(candidate_scores=_ARRAY)}),
    _all(_given(candidate_weight=_NUMBER, candidates={"type": "array", "minItems": 1}), _NO_KEYWORDS),
]}

SEARCH_RULES = {**USER_RULES, "allOf": [*USER_RULES["allOf"], _MODES, _FUSION, _CANDIDATE_FUSION]}

FILTER_FIELDS = {"anyOf": [{"const": "categories"}, {"const": "item_id"}, {"pattern": "^attributes\\.[\\s\\S]"}]}

EVENT_RULES = {"anyOf": [  # a review has its text; an interaction has none
    _given(type={"const": "review"}, text={"type": "string", "pattern": NON_BLANK_PATTERN}),
    _all(_given(type={"const": "interaction"}), {"anyOf": [_absent("text"), _given(text={"type": "null"})]}),
]}
