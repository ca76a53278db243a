"""One event: an interaction (a purchase, a play, a rating) or a review, as `POST /v1/events` and
`p4r events ingest` take them. The fields are those of the interactions and reviews files, with their
types and messages (models.py), plus an `event_id` that makes a retry harmless; ids are at most 500
characters and a numeric time is Unix seconds (0 to 2e10), as the service's other ids and the schema say."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from ..models import NON_BLANK_PATTERN, Id, Interaction, Rating, Review, Text, Timestamp, _Input

MAX_ID = 500
LATEST_SECONDS = 2e10  # year 2603: a larger number is likely milliseconds, which would be read as a date far off


def _unix_seconds(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and not 0 <= value <= LATEST_SECONDS:
        raise ValueError(f"a numeric timestamp is Unix seconds from 0 to {LATEST_SECONDS:.0e}, got {value!r}")
    return value


def _bounded_integer(value: Any) -> Any:
    """JSON Schema's integer includes 7.0, which JSON encoders write for some integers: read as 7."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER_ID:
        raise ValueError(f"an integer id is at most {MAX_INTEGER_ID:.0e} in size")
    return value


MAX_INTEGER_ID = 10**18
EventId = Annotated[Id, BeforeValidator(_bounded_integer), Field(max_length=MAX_ID), WithJsonSchema({"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": NON_BLANK_PATTERN},
    {"type": "integer", "minimum": -MAX_INTEGER_ID, "maximum": MAX_INTEGER_ID}]})]
EventTime = Annotated[Timestamp, BeforeValidator(_unix_seconds), WithJsonSchema({"anyOf": [
    {"type": "string", "format": "date-time"}, {"type": "number", "minimum": 0, "maximum": LATEST_SECONDS}]})]


def _event_rules() -> dict:
    from ..serve.rules import EVENT_RULES  # the JSON Schema of the service's document; no import at load

    return EVENT_RULES


class Event(_Input):
    model_config = ConfigDict(json_schema_extra=lambda schema: schema.update(_event_rules()))

    event_id: EventId = Field(description="Unique per event: the same event again (same id) changes nothing.")
    user_id: EventId
    item_id: EventId
    type: Literal["interaction", "review"]
    timestamp: EventTime = Field(description="ISO 8601, or Unix seconds; the history is in this order.")
    rating: Rating | None = None
    text: Text | None = Field(None, description="The review's text: required for a review, refused otherwise.")

    @model_validator(mode="after")
    def _text_with_reviews(self):
        if self.type == "review" and self.text is None:
            raise ValueError("a review event needs its text")
        if self.type == "interaction" and self.text is not None:
            raise ValueError("text is for review events; send type 'review'")
        return self

    def interaction(self) -> Interaction:
        return Interaction(user_id=self.user_id, item_id=self.item_id, timestamp=self.timestamp, rating=self.rating)

    def review(self) -> Review:
        return Review(review_id=self.event_id, item_id=self.item_id, user_id=self.user_id, rating=self.rating,
                      timestamp=self.timestamp, text=self.text)


class EventBatchResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    added: int = Field(description="Events new to the store, now durable.")
    duplicates: int = Field(description="Events whose event_id (or user, item and time) the store had.")
