"""The derived half of the embedded engine: persona vectors in memory, plus a usearch HNSW graph.

Everything here can be rebuilt from the vectors kept in the tantivy store. It is saved under
`vectors-<generation>/` and trusted only when that generation equals the store's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

from ...scoring import ExactScorer

CACHE_PREFIX = "vectors-"


@dataclass(frozen=True)
class HnswConfig:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64
    dtype: str = "f32"


def cache_dir(root: Path, generation: int) -> Path:
    return root / f"{CACHE_PREFIX}{generation:08d}"


class VectorCache:
    """Rows (key, item, vector), grouped by item; `item_rows` maps an item to its row positions."""

    def __init__(self, dim: int, keys: np.ndarray, items: np.ndarray, vectors: np.ndarray, hnsw: Index, config: HnswConfig):
        self.dim = dim
        self.keys = keys.astype(np.uint64)
        self.items = items.astype(object)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        self.hnsw = hnsw
        self.config = config
        self._reindex()

    @classmethod
    def empty(cls, dim: int, config: HnswConfig) -> VectorCache:
        return cls(dim, np.zeros(0, np.uint64), np.zeros(0, object), np.zeros((0, dim), np.float32), _new_hnsw(dim, config), config)

    @classmethod
    def from_rows(cls, dim: int, rows: Iterable[tuple[int, str, bytes]], config: HnswConfig) -> VectorCache:
        keys, items, blobs = [], [], []
        for key, item_id, blob in rows:
            keys.append(key)
            items.append(item_id)
            blobs.append(blob)
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dim) if blobs else np.zeros((0, dim), np.float32)
        cache = cls.empty(dim, config)
        cache.apply(removed_items=(), keys=np.asarray(keys, np.uint64), items=np.asarray(items, object), vectors=vectors)
        return cache

    @classmethod
    def load(cls, path: Path, dim: int, config: HnswConfig) -> VectorCache:
        with np.load(path / "rows.npz", allow_pickle=False) as data:
            keys, items, vectors = data["keys"], data["items"], data["vectors"]
        hnsw = _new_hnsw(dim, config)
        hnsw.load(str(path / "hnsw.usearch"))
        hnsw.expansion_search = config.expansion_search
        return cls(dim, keys, items, vectors, hnsw, config)

    def save(self, root: Path, generation: int) -> Path:
        """Write to a temporary folder, then rename it into place: the folder is complete or absent."""
        final = cache_dir(root, generation)
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        np.savez(tmp / "rows.npz", keys=self.keys, items=self.items.astype(str), vectors=self.vectors)
        self.hnsw.save(str(tmp / "hnsw.usearch"))
        for name in ("rows.npz", "hnsw.usearch"):
            _fsync(tmp / name)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync(root)
        for old in root.glob(f"{CACHE_PREFIX}*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    # -- changes ----------------------------------------------------------------------------------
    def apply(self, removed_items: Iterable[str], keys: np.ndarray, items: np.ndarray, vectors: np.ndarray) -> None:
        """Drop every row of `removed_items`, then add the new rows."""
        removed = [pos for item in removed_items for pos in self.item_rows.get(item, ())]
        if removed:
            self.hnsw.remove(self.keys[removed])
            keep = np.ones(len(self.keys), dtype=bool)
            keep[removed] = False
            self.keys, self.items, self.vectors = self.keys[keep], self.items[keep], self.vectors[keep]
        if len(keys):
            self.hnsw.add(np.asarray(keys, np.uint64), np.asarray(vectors, np.float32), threads=os.cpu_count() or 1)
            self.keys = np.concatenate([self.keys, keys.astype(np.uint64)])
            self.items = np.concatenate([self.items, items.astype(object)])
            self.vectors = np.concatenate([self.vectors, np.asarray(vectors, np.float32).reshape(-1, self.dim)])
        self._reindex()

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Row positions of keys, vectorised (keys are sorted once per change)."""
        return self._key_order[np.searchsorted(self.keys[self._key_order], np.asarray(keys, np.uint64))]

    def _reindex(self) -> None:
        """Group rows by item (stable, so an item's personas keep their order), so that the exact scorer
        works on views of `vectors` without copying them."""
        order = np.argsort(self.items, kind="stable")
        self.keys, self.items, self.vectors = self.keys[order], self.items[order], self.vectors[order]
        bounds = np.flatnonzero(self.items[1:] != self.items[:-1]) + 1 if len(self.items) else np.zeros(0, np.int64)
        self._offsets = np.concatenate([[0], bounds, [len(self.items)]]).astype(np.int64)
        starts = self._offsets[:-1] if len(self.items) else np.zeros(0, np.int64)
        self._item_ids = [str(self.items[i]) for i in starts]
        self.item_rows: dict[str, np.ndarray] = {
            item: np.arange(a, b) for item, a, b in zip(self._item_ids, self._offsets[:-1], self._offsets[1:])
        }
        self.key_position = {int(k): i for i, k in enumerate(self.keys)}
        self._key_order = np.argsort(self.keys, kind="stable")
        self._scorer: ExactScorer | None = None

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def scorer(self) -> ExactScorer:
        """The exact scorer over every row, built on first use."""
        if self._scorer is None:
            self._scorer = ExactScorer.from_grouped(self._item_ids, self._offsets, self.vectors)
        return self._scorer

    def item_vectors(self, item_id: str) -> np.ndarray | None:
        rows = self.item_rows.get(item_id)
        return None if rows is None else self.vectors[rows]

    def row_key(self, item_id: str, persona_index: int) -> int:
        return int(self.keys[self.item_rows[item_id][persona_index]])

    def knn_items(self, vector: np.ndarray, count: int, allowed: set[str] | None, exclude: frozenset[str]) -> list[str]:
        """Items of the nearest persona rows, nearest first, until `count` items pass the filters.

        The row search widens (doubling) while too few rows survive filtering, up to every row.
        """
        want = min(count * 4, len(self))
        while True:
            matches = self.hnsw.search(vector, want)
            found: dict[str, None] = {}
            for item in self.items[self._positions(matches.keys)]:
                if item not in exclude and (allowed is None or item in allowed):
                    found[item] = None
            if len(found) >= count or want >= len(self):
                return list(found)[:count]
            want = min(want * 2, len(self))


def _new_hnsw(dim: int, config: HnswConfig) -> Index:
    return Index(
        ndim=dim,
        metric="cos",
        dtype=config.dtype,
        connectivity=config.connectivity,
        expansion_add=config.expansion_add,
        expansion_search=config.expansion_search,
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
