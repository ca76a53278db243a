"""The persona generator interface: an item and its reviews in, 1 to 7 personas out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Protocol

from ..models import GeneratorInfo, Item, Persona, Review

SNIPPET_CHARS = 240


class PersonaGenerator(Protocol):
    """Generators are deterministic for a given `info` (which includes the seed) and input."""

    @property
    def info(self) -> GeneratorInfo: ...

    def generate(self, item: Item, reviews: Sequence[Review]) -> list[Persona]: ...


def input_hash(item: Item, reviews: Sequence[Review], info: GeneratorInfo) -> str:
    """A stable hash of everything that determines an item's personas."""
    payload = {
        "item": item.model_dump(mode="json"),
        "reviews": sorted((r.model_dump(mode="json") for r in reviews), key=lambda r: r["review_id"]),
        "generator": info.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A review excerpt for explanations, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"
