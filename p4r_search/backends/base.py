"""The one small protocol that every backend implements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from ..documents import ItemDocument
from ..models import Hit, MatchedPersona
from ..query import PersonaQuery


class Backend(Protocol):
    @property
    def model_name(self) -> str | None:
        """The encoder model the persona vectors were made with (None while empty)."""

    def upsert(self, documents: Iterable[ItemDocument]) -> int:
        """Write items' personas, replacing what an item had; returns the number of items written."""

    def delete(self, item_ids: Sequence[str]) -> int:
        """Remove items; returns how many existed."""

    def search(self, query: PersonaQuery) -> list[Hit]: ...

    def persona_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Persona vectors of the given items that exist, as (personas, dim) matrices."""

    def personas(self, item_id: str) -> list[MatchedPersona]: ...

    def __len__(self) -> int:
        """The number of items."""
