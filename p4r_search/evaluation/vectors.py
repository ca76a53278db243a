"""Item representations for the evaluation: personas and their vectors, and mean review embeddings.

Encoding is the slow part on a CPU, so everything goes through one `CachedEncoder` (vectors kept on disk
by model and text): a review is embedded once for both the personas and the single-vector baseline, and a
rerun encodes nothing. Persona generation goes through the resumable runner, so a rerun generates nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog
from ..encoder import TextEncoder
from ..models import Item, ItemPersonas, Persona, Review
from ..personas import make_generator
from ..personas.runner import generate_personas, read_personas
from ..profile import normalise


@dataclass(frozen=True)
class PersonaVectors:
    """Persona vectors grouped by item: rows offsets[i]:offsets[i+1] belong to item i, best support first."""

    offsets: np.ndarray
    vectors: np.ndarray

    def item_vectors(self) -> np.ndarray:
        """Each item as the normalised mean of its persona vectors (how a history item enters a profile)."""
        sums = np.add.reduceat(self.vectors.astype(np.float64), self.offsets[:-1], axis=0)
        return np.stack([normalise(s) for s in sums])


def training_catalog(items: dict[str, Item], reviews: Iterable[Review]) -> Catalog:
    """The items that keep at least one review, in id order, with those reviews."""
    by_item: dict[str, list[Review]] = defaultdict(list)
    for review in reviews:
        by_item[review.item_id].append(review)
    catalog = Catalog()
    for item_id in sorted(by_item):
        catalog.items[item_id] = items[item_id]
        catalog.reviews[item_id] = sorted(by_item[item_id], key=lambda r: r.review_id)
    return catalog


def build_personas(
    catalog: Catalog,
    generator_name: str,
    encoder: TextEncoder,
    out_path: Path,
    *,
    seed: int,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> dict[str, ItemPersonas]:
    """Personas of every catalog item, generated resumably into `out_path` (a rerun skips finished items).
    Give it the caching encoder that embedded the reviews, so the generator finds their vectors there."""
    generator = make_generator(generator_name, encoder, seed=seed)
    generate_personas(catalog, generator, out_path, progress=progress)
    records = read_personas(out_path)
    return {item_id: records[item_id] for item_id in catalog.items}


def by_support(record: ItemPersonas) -> list[Persona]:
    """The item's personas, largest support first (stable), so that `PersonaVectors.top` keeps the biggest."""
    return sorted(record.personas, key=lambda p: -p.support)
