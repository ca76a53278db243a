"""What the model must answer: JSON schemas for the request, pydantic models to validate the answer.

The schema is bounded (string lengths, list sizes) because small local models only produce valid JSON
reliably under a grammar with bounded lengths, and evidence ids are an `enum` of the ids actually in the
prompt, so a grammar-constrained endpoint cannot cite any other. Endpoints without schema support get the
same checks after the fact: `parse_personas` validates everything and raises `InvalidOutput` with a message
that is sent back to the model as a repair request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...io import describe_validation_error

# The word lengths are bounded in the pattern itself: grammar converters (llama.cpp) apply a pattern
# instead of maxLength, and an unbounded word lets a small model write a 200-letter "name".
NAME_PATTERN = r"^[A-Za-z][A-Za-z'&-]{0,15}( [A-Za-z][A-Za-z'&-]{0,15}){1,2}$"
NAME_MAX, TEXT_MIN, TEXT_MAX, MAX_EVIDENCE = 50, 10, 300, 8


class InvalidOutput(ValueError):
    """The model's answer is not usable: not JSON, not the schema, or citing ids that were not in the prompt."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DraftPersona(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX)
    description: str = Field(min_length=TEXT_MIN, max_length=TEXT_MAX * 2)
    rationale: str = Field(min_length=TEXT_MIN, max_length=TEXT_MAX * 2)
    evidence_review_ids: list[str] = Field(min_length=1)


class DraftPersonas(_Strict):
    personas: list[DraftPersona]


class Quality(_Strict):
    quality: str = Field(min_length=1, max_length=60)
    sentiment: Literal["positive", "negative", "mixed"]


class ReviewAspects(_Strict):
    purpose: str = Field(max_length=200)
    context: str = Field(max_length=200)
    qualities: list[Quality] = Field(default_factory=list, max_length=8)


def persona_count(review_count: int) -> tuple[int, int]:
    """2 to 7 personas, or exactly 1 for an item with a single review."""
    return (1, 1) if review_count == 1 else (2, 7)


def personas_schema(evidence_ids: Sequence[str], count: tuple[int, int]) -> dict[str, Any]:
    text = {"type": "string", "minLength": TEXT_MIN, "maxLength": TEXT_MAX}
    persona = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": NAME_MAX},
            "description": text,
            "rationale": text,
            "evidence_review_ids": {
                "type": "array",
                "items": {"type": "string", "enum": list(evidence_ids)},
                "minItems": 1,
                "maxItems": min(MAX_EVIDENCE, len(evidence_ids)),
            },
        },
        "required": ["name", "description", "rationale", "evidence_review_ids"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"personas": {"type": "array", "items": persona, "minItems": count[0], "maxItems": count[1]}},
        "required": ["personas"],
        "additionalProperties": False,
    }


def aspects_schema() -> dict[str, Any]:
    short = {"type": "string", "maxLength": 120}
    quality = {
        "type": "object",
        "properties": {
            "quality": {"type": "string", "minLength": 1, "maxLength": 40},
            "sentiment": {"type": "string", "enum": ["positive", "negative", "mixed"]},
        },
        "required": ["quality", "sentiment"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"purpose": short, "context": short, "qualities": {"type": "array", "items": quality, "maxItems": 5}},
        "required": ["purpose", "context", "qualities"],
        "additionalProperties": False,
    }


def _load_json(content: str | None) -> Any:
    if not content or not content.strip():
        raise InvalidOutput("the answer is empty")
    text = content.strip()
    if text.startswith("```"):  # some endpoints wrap JSON in a markdown fence despite the instructions
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the answer is not valid JSON: {exc.msg} at column {exc.colno}") from None


def parse_personas(
    content: str | None, evidence_ids: Sequence[str], count: tuple[int, int]
) -> tuple[list[DraftPersona], list[str]]:
    """Validate an answer against the schema and the prompt's evidence ids.

    Unknown ids are dropped from a persona that still has a known one (a repair; the dropped ids are
    returned so they can be counted); a persona left with none makes the whole answer invalid. No unknown
    id is ever returned.
    """
    try:
        drafts = DraftPersonas.model_validate(_load_json(content)).personas
    except ValidationError as exc:
        raise InvalidOutput(f"the answer does not match the schema: {describe_validation_error(exc)}") from None
    if not count[0] <= len(drafts) <= count[1]:
        raise InvalidOutput(f"expected {count[0]} to {count[1]} personas, got {len(drafts)}")
    known = set(evidence_ids)
    dropped = sorted({rid for d in drafts for rid in d.evidence_review_ids} - known)
    repaired = []
    for draft in drafts:
        kept = list(dict.fromkeys(rid for rid in draft.evidence_review_ids if rid in known))
        if not kept:
            raise InvalidOutput(
                f"persona {draft.name!r} cites no review from the prompt ({draft.evidence_review_ids}); "
                f"use only these ids: {', '.join(evidence_ids)}"
            )
        repaired.append(draft.model_copy(update={"evidence_review_ids": kept}))
    return repaired, dropped


def parse_aspects(content: str | None) -> ReviewAspects:
    try:
        return ReviewAspects.model_validate(_load_json(content))
    except ValidationError as exc:
        raise InvalidOutput(f"the answer does not match the schema: {describe_validation_error(exc)}") from None
