"""Personas → vectors. Three kinds, chosen per index (`--persona-vector`) and recorded in it:

- `text`: the embedding of the persona's text (`Persona.embedding_text`: name, description, rationale);
- `evidence`: the normalised mean of its evidence reviews' embeddings (the reviews it cites: for the
  extractive generator, its whole review cluster), so the persona lives where its reviewers' words live;
- `blend`: the normalised sum of the two unit vectors.

`evidence` and `blend` need the review texts. A persona none of whose evidence reviews is known falls
back to its text vector, and the count is reported, never hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .encoder import TextEncoder
from .errors import ChoiceError, ConfigError
from .profile import unit_rows


class PersonaVectorKind(str, Enum):
    TEXT = "text"
    EVIDENCE = "evidence"
    BLEND = "blend"


PERSONA_VECTOR_KINDS = tuple(k.value for k in PersonaVectorKind)


@dataclass(frozen=True)
class PersonaVectorRecipe:
    """What each persona vector is made of, as row indices into one table of texts to embed."""

    texts: list[str]  # every distinct text needed, persona texts and review texts
    text_rows: np.ndarray  # (personas,) row of each persona's own text
    evidence_rows: list[np.ndarray]  # per persona, the rows of its known evidence reviews (may be empty)


def recipe(personas: Sequence, review_texts: Mapping[str, str] | None) -> PersonaVectorRecipe:
    """`personas`: Persona objects; `review_texts`: review id → text (None: no evidence known)."""
    rows: dict[str, int] = {}

    def row(text: str) -> int:
        return rows.setdefault(text, len(rows))

    text_rows = np.array([row(p.embedding_text) for p in personas], dtype=np.int64)
    reviews = review_texts or {}
    evidence = [np.array([row(reviews[r]) for r in p.evidence_review_ids if r in reviews], dtype=np.int64)
                for p in personas]
    return PersonaVectorRecipe(list(rows), text_rows, evidence)


def combine(kind: PersonaVectorKind | str, recipe_: PersonaVectorRecipe, embedded: np.ndarray) -> tuple[np.ndarray, int]:
    """Persona vectors from the embedded rows of `recipe_.texts` (unit rows, any encoder), and how many
    personas fell back to their text vector for want of a known evidence review."""
    kind = PersonaVectorKind(kind)
    text = embedded[recipe_.text_rows]
    if kind is PersonaVectorKind.TEXT:
        return unit_rows(text), 0
    out, fallbacks = np.empty_like(text), 0
    for n, rows in enumerate(recipe_.evidence_rows):
        if len(rows) == 0:
            out[n], fallbacks = text[n], fallbacks + 1
            continue
        evidence = unit_rows(embedded[rows].mean(axis=0))
        out[n] = evidence if kind is PersonaVectorKind.EVIDENCE else evidence + unit_rows(text[n])
    return unit_rows(out), fallbacks


def embed_personas(personas: Sequence, encoder: TextEncoder, kind: PersonaVectorKind | str = "text",
                   review_texts: Mapping[str, str] | None = None) -> tuple[np.ndarray, int]:
    """(personas, dim) unit vectors of the given kind, and the number of text fallbacks."""
    kind = parse_kind(kind)
    if kind is not PersonaVectorKind.TEXT and review_texts is None:
        raise ConfigError(f"persona vectors of kind {kind.value!r} need the review texts (--reviews)")
    made = recipe(personas, review_texts if kind is not PersonaVectorKind.TEXT else None)
    if not made.texts:
        return np.zeros((0, encoder.dim), dtype=np.float32), 0
    return combine(kind, made, encoder.encode(made.texts))


def parse_kind(kind: PersonaVectorKind | str) -> PersonaVectorKind:
    try:
        return PersonaVectorKind(kind)
    except ValueError:
        raise ChoiceError("persona vector kind", kind, PERSONA_VECTOR_KINDS) from None
