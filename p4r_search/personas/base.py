"""The persona generator interface: an item and its reviews in, 1 to 7 personas out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import P4RError
from ..models import GeneratorInfo, Item, ItemPersonas, Persona, Review
from ..redaction import redact

SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Generated:
    """An item's personas, the reviews they were made from, and notes on repairs made on the way."""

    personas: list[Persona]
    used_review_ids: list[str]
    notes: list[str] = field(default_factory=list)

    def line(self, item_id: str, info: GeneratorInfo, input_hash: str) -> ItemPersonas:
        """The personas line of the item (what `p4r personas generate` appends)."""
        return ItemPersonas(item_id=item_id, personas=self.personas, generator=info, input_hash=input_hash,
                            used_review_ids=self.used_review_ids, notes=self.notes)


class GenerationFailed(P4RError):
    """One item could not be given personas (after retries); the run records it and goes on."""

    def __init__(self, item_id: str, reason: str, attempts: int | None = None):
        self.item_id, self.reason, self.attempts = item_id, redact(reason), attempts
        super().__init__(f"item {item_id!r}: {reason}")

    def record(self, input_hash: str) -> dict:
        """The line of the failed-items file."""
        return {"item_id": self.item_id, "error": self.reason, "attempts": self.attempts, "input_hash": input_hash}


class PersonaGenerator(Protocol):
    """Generators are deterministic for a given `info` (which includes the seed) and input, and thread-safe:
    the runner may call `generate` from several threads."""

    @property
    def info(self) -> GeneratorInfo: ...

    def generate(self, item: Item, reviews: Sequence[Review]) -> Generated: ...


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
