"""An encoder that remembers its vectors in a SQLite file, so reruns of an evaluation encode nothing twice.

Vectors are keyed by a SHA-256 of the model name, the maximum sequence length and the text: another model
or another truncation never reuses a stale vector. The file may be deleted at any time (it is only a cache).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from ..encoder import TextEncoder

LOOKUP_CHUNK = 500  # SQLite's default limit on host parameters is 999


class CachedEncoder:
    """Wraps a TextEncoder; `encode` encodes only the texts not in the cache, each distinct text once."""

    def __init__(self, encoder: TextEncoder, path: str | Path):
        self.encoder = encoder
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    @property
    def model_name(self) -> str:
        return self.encoder.model_name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def key(self, text: str) -> str:
        max_len = getattr(self.encoder, "max_seq_length", None)
        return hashlib.sha256(f"{self.model_name}\0{max_len}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.encoder.encode([])
        keys = [self.key(text) for text in texts]
        found = self._lookup(list(dict.fromkeys(keys)))
        missing = {key: text for key, text in zip(keys, texts) if key not in found}
        self.hits += len(texts) - sum(key in missing for key in keys)
        self.misses += len(missing)
        if missing:
            vectors = self.encoder.encode(list(missing.values()))
            found.update(zip(missing, vectors))
            self._store(list(missing), vectors)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with closing(sqlite3.connect(self.path)) as db:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start:start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, blob in db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _store(self, keys: list[str], vectors: np.ndarray) -> None:
        rows = [(key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in zip(keys, vectors)]
        with closing(sqlite3.connect(self.path)) as db, db:
            db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
