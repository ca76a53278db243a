"""The variants that `p4r eval loo` compares: profile source × encoder (untrained, trained) × persona vector kind.

A variant fixes how texts are embedded (the base encoder, or the base encoder plus the head trained for this
profile source and persona vector kind), what a persona vector is (persona_vectors.py) and what a history
interaction is (profile.py). Everything is computed from the cached base embeddings: a trained encoder's
vectors are `TrainedHead.apply` of them, exactly what the saved model computes (tests/test_training.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from ..catalog import Catalog
from ..models import ItemPersonas
from ..persona_vectors import PersonaVectorKind, combine, recipe
from ..profile import ProfileSource, interaction_vectors, unit_rows
from .vectors import PersonaVectors, by_support

UNTRAINED, TRAINED = "untrained", "trained"


@dataclass(frozen=True, order=True)
class Variant:
    profile: str
    encoder: str
    persona_vector: str

    def as_dict(self) -> dict[str, str]:
        return {"profile": self.profile, "encoder": self.encoder, "persona_vector": self.persona_vector}

    @property
    def label(self) -> str:
        return f"{self.profile}/{self.encoder}/{self.persona_vector}"


@dataclass(frozen=True)
class HistoryTable:
    """The cases' histories, flattened: interaction m belongs to case `case[m]`, is `age[m]` steps before
    the target (0 = the most recent), concerns item `item[m]` and has the user's review at text row
    `review[m]` (-1: no usable review: none, or held out)."""

    cases: int
    case: np.ndarray
    age: np.ndarray
    item: np.ndarray
    review: np.ndarray

    @classmethod
    def build(cls, users: Sequence[str], histories: Sequence[Sequence[int]], item_ids: Sequence[str],
              review_row: Mapping[tuple[str, str], int]) -> HistoryTable:
        case, age, item, review = [], [], [], []
        for c, (user, history) in enumerate(zip(users, histories)):
            for a, i in enumerate(reversed(list(history))):
                case.append(c), age.append(a), item.append(i)
                review.append(review_row.get((user, item_ids[i]), -1))
        as_array = lambda values: np.asarray(values, dtype=np.int64)
        return cls(len(users), as_array(case), as_array(age), as_array(item), as_array(review))

    def profiles(self, items: np.ndarray, reviews: np.ndarray, source: str, last_n: int, gamma: float) -> np.ndarray:
        """(cases, dim) profiles: profile.history_profile over profile.interaction_vectors, for every case at
        once; a case without history gets a zero profile (every item ties; candidates keep their order)."""
        keep = self.age < last_n
        rows = interaction_vectors(items[self.item[keep]], reviews[np.maximum(self.review[keep], 0)],
                                   self.review[keep] >= 0, ProfileSource(source))
        weights = csr_matrix((gamma ** self.age[keep].astype(np.float64), (self.case[keep], np.arange(keep.sum()))),
                             shape=(self.cases, int(keep.sum())))
        summed = np.asarray(weights @ rows.astype(np.float64))
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return (summed / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class TextTable:
    """Every text a variant embeds (training reviews and persona texts), and their base-encoder vectors."""

    rows: dict[str, int]
    base: np.ndarray

    @classmethod
    def build(cls, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> TextTable:
        distinct = list(dict.fromkeys(texts))
        return cls({t: n for n, t in enumerate(distinct)}, encode(distinct))


@dataclass(frozen=True)
class Embedded:
    """One variant's vectors: personas (grouped by item), items for a profile, single vectors, reviews."""

    personas: PersonaVectors
    items: np.ndarray  # each item as the normalised mean of its persona vectors
    single: np.ndarray  # each item as the normalised mean of its training reviews
    texts: np.ndarray  # every row of the text table, as this variant's encoder embeds it


def embed_variant(kind: str, catalog: Catalog, records: Mapping[str, ItemPersonas], table: TextTable,
                  transform: Callable[[np.ndarray], np.ndarray] | None, prior: float = 0.0) -> Embedded:
    """The vectors of one (encoder, persona vector kind): `transform` maps base vectors to the encoder's."""
    texts = table.base if transform is None else transform(table.base)
    personas = [p for item_id in catalog.items for p in by_support(records[item_id])]
    owners = [item_id for item_id in catalog.items for _ in records[item_id].personas]
    review_texts = {r.review_id: r.text for reviews in catalog.reviews.values() for r in reviews}
    made = recipe(personas, review_texts if kind != PersonaVectorKind.TEXT.value else None, owners)
    embedded = texts[[table.rows[t] for t in made.texts]]
    vectors, _ = combine(kind, made, embedded, prior)
    sizes = [len(records[item_id].personas) for item_id in catalog.items]
    grouped = PersonaVectors(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), vectors)
    single = unit_rows(np.stack([texts[[table.rows[r.text] for r in reviews]].mean(axis=0)
                                 for reviews in catalog.reviews.values()]))
    return Embedded(grouped, grouped.item_vectors(), single, texts)
