"""Personas + vectors → index documents: one per item, holding its personas and their vectors.

The text searched with BM25 is `Persona.embedding_text`: its name, description and rationale, joined. What
is embedded depends on the persona vector kind (persona_vectors.py): that text, the persona's evidence
reviews, or both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from .encoder import TextEncoder
from .models import GeneratorInfo, Item, ItemPersonas, Persona
from .persona_vectors import DEFAULT_EVIDENCE_PRIOR, PersonaVectorKind, combine, parse_kind, recipe


@dataclass(frozen=True)
class ItemDocument:
    item_id: str
    title: str
    personas: tuple[Persona, ...]
    vectors: np.ndarray  # (len(personas), dim), unit rows
    generator: GeneratorInfo
    input_hash: str
    encoder_model: str
    categories: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    persona_vector: str = PersonaVectorKind.TEXT.value
    evidence_prior: float = 0.0
    text_fallbacks: int = 0  # personas embedded by their text because no evidence review was known

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.personas):
            raise ValueError(f"item {self.item_id!r}: one vector per persona is needed")


def build_documents(
    records: Iterable[ItemPersonas],
    encoder: TextEncoder,
    items: Mapping[str, Item] | None = None,
    batch_items: int = 64,
    *,
    persona_vector: PersonaVectorKind | str = PersonaVectorKind.TEXT,
    review_texts: Mapping[str, str] | None = None,
    evidence_prior: float = DEFAULT_EVIDENCE_PRIOR,
) -> Iterator[ItemDocument]:
    """Encode personas in batches of items; item metadata (title, categories, attributes) is optional.
    `review_texts` (review id → text) is needed by the `evidence` and `blend` persona vectors, and
    `evidence_prior` pulls small personas toward their item (persona_vectors.py)."""
    kind = parse_kind(persona_vector)
    evidence = review_texts if kind is not PersonaVectorKind.TEXT else None
    prior = evidence_prior if evidence is not None else 0.0
    records = iter(records)
    while batch := list(islice(records, batch_items)):
        personas = [p for record in batch for p in record.personas]
        made = recipe(personas, evidence, [record.item_id for record in batch for _ in record.personas])
        vectors, _ = combine(kind, made, encoder.encode(made.texts), prior)
        start = 0
        for record in batch:
            end = start + len(record.personas)
            fallbacks = sum(len(rows) == 0 for rows in made.evidence_rows[start:end]) if evidence is not None else 0
            yield make_document(record, vectors[start:end], encoder.model_name, (items or {}).get(record.item_id),
                                persona_vector=kind.value, evidence_prior=prior, text_fallbacks=fallbacks)
            start = end


def make_document(record: ItemPersonas, vectors: np.ndarray, encoder_model: str, item: Item | None, *,
                  persona_vector: str = PersonaVectorKind.TEXT.value, evidence_prior: float = 0.0,
                  text_fallbacks: int = 0) -> ItemDocument:
    return ItemDocument(
        item_id=record.item_id,
        title=item.title if item else record.item_id,
        personas=tuple(record.personas),
        vectors=np.asarray(vectors, dtype=np.float32),
        generator=record.generator,
        input_hash=record.input_hash,
        encoder_model=encoder_model,
        categories=tuple(item.categories) if item else (),
        attributes=dict(item.attributes) if item else {},
        persona_vector=persona_vector,
        evidence_prior=evidence_prior,
        text_fallbacks=text_fallbacks,
    )


def documents_from_stored(records: Iterable[Any], encoder_model: str,
                          items: Mapping[str, Item] | None = None) -> Iterator[ItemDocument]:
    """Documents from vectors made earlier, encoding nothing: each record's `vectors` (a pipeline shard
    line's `StoredVectors`, one row per persona). The caller checks that they were made by `encoder_model`
    and are the kind wanted (`StoredVectors.matches`)."""
    for record in records:
        stored = record.vectors
        prior = stored.evidence_prior if stored.kind != PersonaVectorKind.TEXT.value else 0.0
        yield make_document(record, stored.array(), encoder_model, (items or {}).get(record.item_id),
                            persona_vector=stored.kind, evidence_prior=prior, text_fallbacks=stored.text_fallbacks)
