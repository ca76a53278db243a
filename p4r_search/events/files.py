"""The interactions and reviews files, into and out of a history store."""

from __future__ import annotations

import os
from pathlib import Path

from ..catalog import load_interactions
from ..io import LineReader, to_json_line
from ..models import Review
from .store import HistoryStore

EXPORTED = ("interactions.jsonl", "reviews.jsonl")


def seed_from_files(store: HistoryStore, interactions: Path | None, reviews: Path | None = None) -> int:
    """Add the files' rows to the store; a bad line is an InputError (file, line, what is wrong) raised
    before anything is written. Returns how many rows were new."""
    rows = []
    if interactions is not None:
        rows = [i for history in load_interactions(interactions, LineReader()).values() for i in history]
    own = [r for _, r, _ in LineReader().read(reviews, Review)] if reviews is not None else []
    return store.seed(rows, own)


def export_to_folder(store: HistoryStore, out: Path) -> dict[str, int]:
    """Write interactions.jsonl and reviews.jsonl, each complete or not at all (written aside, renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    interactions, reviews = store.export()
    for name, rows in zip(EXPORTED, (interactions, reviews)):
        aside = out / f".{name}.tmp-{os.getpid()}"
        with open(aside, "w", encoding="utf-8") as fh:
            fh.writelines(to_json_line(row) for row in rows)
        os.replace(aside, out / name)
    return {"interactions": len(interactions), "reviews": len(reviews)}
