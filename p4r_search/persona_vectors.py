"""Personas → vectors. Three kinds, chosen per index (`--persona-vector`) and recorded in it:

- `text`: the embedding of the persona's text (`Persona.embedding_text`: name, description, rationale);
- `evidence`: the centroid of its evidence reviews' embeddings (the reviews it cites: for the extractive
  generator, its whole review cluster), so the persona lives where its reviewers' words live. With an
  evidence prior κ (`--evidence-prior`), κ pseudo-reviews at the item's centroid (the mean of every review
  its personas cite) join each persona's evidence: `normalise(Σ evidence + κ · item centroid)`. A persona
  of 3 reviews then moves half-way toward its item, one of 30 hardly at all: a small cluster's centroid is a
  noisy estimate, and max-sim rewards noise;
- `blend`: the normalised sum of the text and evidence unit vectors.

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
DEFAULT_EVIDENCE_PRIOR = 3.0  # chosen on Digital Music validation (docs/evaluation-history.md)


@dataclass(frozen=True)
class PersonaVectorRecipe:
    """What each persona vector is made of, as row indices into one table of texts to embed."""

    texts: list[str]  # every distinct text needed, persona texts and review texts
    text_rows: np.ndarray  # (personas,) row of each persona's own text
    evidence_rows: list[np.ndarray]  # per persona, the rows of its known evidence reviews (may be empty)
    item_rows: list[np.ndarray] | None = None  # per persona, the rows its item's personas cite (for the prior)


def recipe(personas: Sequence, review_texts: Mapping[str, str] | None,
           items: Sequence[str] | None = None) -> PersonaVectorRecipe:
    """`personas`: Persona objects; `review_texts`: review id → text (None: no evidence known); `items`: each
    persona's item id (for the evidence prior; None: every persona is its own item)."""
    rows: dict[str, int] = {}

    def row(text: str) -> int:
        return rows.setdefault(text, len(rows))

    text_rows = np.array([row(p.embedding_text) for p in personas], dtype=np.int64)
    reviews = review_texts or {}
    evidence = [np.array([row(reviews[r]) for r in p.evidence_review_ids if r in reviews], dtype=np.int64)
                for p in personas]
    by_item: dict[str, set[int]] = {}
    for item, rows_ in zip(items or range(len(personas)), evidence):
        by_item.setdefault(item, set()).update(rows_.tolist())
    item_rows = [np.array(sorted(by_item[item]), dtype=np.int64) for item in (items or range(len(personas)))]
    return PersonaVectorRecipe(list(rows), text_rows, evidence, item_rows)


def evidence_vector(embedded: np.ndarray, rows: np.ndarray, item_rows: np.ndarray | None, prior: float) -> np.ndarray:
    """normalise(Σ evidence + prior · item centroid); with prior 0 the evidence centroid."""
    summed = embedded[rows].sum(axis=0)
    if prior and item_rows is not None and len(item_rows):
        summed = summed + prior * unit_rows(embedded[item_rows].mean(axis=0))
    return unit_rows(summed)


def combine(kind: PersonaVectorKind | str, recipe_: PersonaVectorRecipe, embedded: np.ndarray,
            prior: float = 0.0) -> tuple[np.ndarray, int]:
    """Persona vectors from the embedded rows of `recipe_.texts` (unit rows, any encoder), and how many
    personas fell back to their text vector for want of a known evidence review."""
    kind = PersonaVectorKind(kind)
    text = embedded[recipe_.text_rows]
    if kind is PersonaVectorKind.TEXT:
        return unit_rows(text), 0
    out, fallbacks = np.empty_like(text), 0
    item_rows = recipe_.item_rows or [None] * len(recipe_.evidence_rows)
    for n, (rows, item) in enumerate(zip(recipe_.evidence_rows, item_rows)):
        if len(rows) == 0:
            out[n], fallbacks = text[n], fallbacks + 1
            continue
        evidence = evidence_vector(embedded, rows, item, prior)
        out[n] = evidence if kind is PersonaVectorKind.EVIDENCE else evidence + unit_rows(text[n])
    return unit_rows(out), fallbacks


def embed_personas(personas: Sequence, encoder: TextEncoder, kind: PersonaVectorKind | str = "text",
                   review_texts: Mapping[str, str] | None = None, *, items: Sequence[str] | None = None,
                   prior: float = DEFAULT_EVIDENCE_PRIOR) -> tuple[np.ndarray, int]:
    """(personas, dim) unit vectors of the given kind, and the number of text fallbacks."""
    kind = parse_kind(kind)
    if kind is not PersonaVectorKind.TEXT and review_texts is None:
        raise ConfigError(f"persona vectors of kind {kind.value!r} need the review texts (--reviews)")
    if prior < 0:
        raise ConfigError(f"the evidence prior must not be negative, got {prior}")
    made = recipe(personas, review_texts if kind is not PersonaVectorKind.TEXT else None, items)
    if not made.texts:
        return np.zeros((0, encoder.dim), dtype=np.float32), 0
    return combine(kind, made, encoder.encode(made.texts), prior)


def parse_kind(kind: PersonaVectorKind | str) -> PersonaVectorKind:
    try:
        return PersonaVectorKind(kind)
    except ValueError:
        raise ChoiceError("persona vector kind", kind, PERSONA_VECTOR_KINDS) from None
