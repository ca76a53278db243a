"""The data formats, as pydantic models: items, reviews, interactions, personas, and search hits.

Every input model forbids unknown keys, so a misspelled field is an error rather than silently ignored.
Ids are strings; integer ids in real exports are accepted and turned into strings.
Timestamps accept Unix seconds or ISO 8601 and are kept as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def _id_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # let pydantic reject it: a boolean is never an id
    return str(value) if isinstance(value, int) else value


# JSON Schema for _non_blank: a character that str.isspace() is False for (tests/test_events.py holds the list)
NON_BLANK_PATTERN = ("[^\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f"
                     "\\u205f\\u3000]")


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace-only")
    return value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _two_or_three_words(value: str) -> str:
    words = value.split()
    if not 2 <= len(words) <= 3:
        raise ValueError(f"a persona name has 2 or 3 words, got {len(words)}: {value!r}")
    return " ".join(words)


Id = Annotated[str, BeforeValidator(_id_to_str), AfterValidator(_non_blank)]
Text = Annotated[str, AfterValidator(_non_blank)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
Rating = Annotated[float, Field(ge=0, le=10)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Input):
    item_id: Id
    title: Text
    description: str | None = None
    categories: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Review(_Input):
    review_id: Id
    item_id: Id
    user_id: Id | None = None
    rating: Rating | None = None
    timestamp: Timestamp | None = None
    text: Text


class Interaction(_Input):
    user_id: Id
    item_id: Id
    timestamp: Timestamp
    rating: Rating | None = None


class EvidenceSnippet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    review_id: Id
    text: str


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    persona_id: Id
    name: Annotated[str, AfterValidator(_two_or_three_words)]
    description: Text
    rationale: Text
    evidence_review_ids: list[Id] = Field(min_length=1)
    support: Annotated[float, Field(ge=0, le=1)]
    evidence_snippets: list[EvidenceSnippet] = Field(
        default_factory=list,
        description="Short excerpts of the most representative evidence reviews, shown in explanations.",
    )

    @property
    def embedding_text(self) -> str:
        """The text that is embedded and searched with BM25: name, description and rationale."""
        return f"{self.name}. {self.description} {self.rationale}"


class GeneratorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    model: str
    prompt_version: str = Field(description="The prompt version, or the algorithm version of a non-LLM generator.")
    params: dict[str, Any] = Field(default_factory=dict)


MAX_PERSONAS = 7  # per item: the paper's 2 to 7, and 1 where an item's reviews support only one


class ItemPersonas(BaseModel):
    """One line of a personas JSONL file: the personas of one item and how they were made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Id
    personas: list[Persona] = Field(min_length=1, max_length=MAX_PERSONAS)
    generator: GeneratorInfo
    input_hash: str = Field(description="Hash of the item, its reviews and the generator settings.")
    used_review_ids: list[Id] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="Repairs made while generating, e.g. merged near-duplicates, dropped ids."
    )


class MatchedPersona(BaseModel):
    model_config = ConfigDict(frozen=True)

    persona_id: str
    name: str
    description: str
    rationale: str
    support: float


class Hit(BaseModel):
    """One recommended item, with the persona that explains it."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    score: float = Field(description="Cosine similarity of the best persona, or the fused score in hybrid mode "
                                     "and when reranking the caller's candidates with a weight.")
    scores: dict[str, float] = Field(description="Component scores: cosine, bm25, candidate_rank (1 = the caller's "
                                                 "first) and fused where present.")
    persona: MatchedPersona | None = Field(default=None, description="The best-matching persona; None when not explained.")
    evidence: list[EvidenceSnippet] = Field(default_factory=list)


class PersonaCard(BaseModel):
    """One persona of an item as a person reads it: the persona and its evidence reviews."""

    model_config = ConfigDict(frozen=True)

    persona: MatchedPersona
    evidence: list[EvidenceSnippet] = Field(default_factory=list)


class ItemCard(BaseModel):
    """An indexed item and all its personas, in their stored order."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str
    personas: list[PersonaCard]
