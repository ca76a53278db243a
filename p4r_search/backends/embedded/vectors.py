"""The vector half of the embedded engine: persona vectors and explanation payloads, plus a usearch HNSW graph.

A vector cache is saved under `vectors-<generation>/` and trusted only when that generation equals the
store's. It holds the only float32 copy of the vectors: with the default f32 graph they are read back
from the usearch file itself (`vectors.npy` is written only for an f16/i8 graph), so the index costs
about 1.1x the raw vectors on disk instead of 3x.

Since the store does not keep the vectors, a write first saves its new rows as `pending-<generation>.npz`
(the write-ahead file), then commits the store, then saves the cache. After a crash between the last two
steps, the cache is rebuilt from the previous cache plus the pending rows (`rebuild`).
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from usearch.index import Index, ScalarKind

from ...errors import IndexStateError
from ...scoring import ExactScorer

CACHE_PREFIX = "vectors-"
PENDING_PREFIX = "pending-"
ROWS, PAYLOADS, HNSW, VECTORS = "rows.npz", "payloads.zlib", "hnsw.usearch", "vectors.npy"


@dataclass(frozen=True)
class HnswConfig:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64
    dtype: str = "f32"


@dataclass(frozen=True)
class RowBatch:
    """Persona rows: u64 keys, item ids, float32 vectors (rows x dim) and JSON payloads (bytes)."""

    keys: np.ndarray
    items: np.ndarray
    vectors: np.ndarray
    payloads: np.ndarray

    @classmethod
    def of(cls, dim: int, keys: Sequence[int], items: Sequence[str], vectors: Sequence[np.ndarray],
           payloads: Sequence[bytes]) -> RowBatch:
        return cls(np.asarray(keys, np.uint64), _objects(items), np.asarray(vectors, np.float32).reshape(-1, dim),
                   _objects(payloads))

    @classmethod
    def concat(cls, dim: int, batches: Sequence[RowBatch]) -> RowBatch:
        if not batches:
            return cls.of(dim, [], [], [], [])
        return cls(*(np.concatenate([getattr(b, f) for b in batches]) for f in ("keys", "items", "vectors", "payloads")))


def cache_dir(root: Path, generation: int) -> Path:
    return root / f"{CACHE_PREFIX}{generation:08d}"


def pending_path(root: Path, generation: int) -> Path:
    return root / f"{PENDING_PREFIX}{generation:08d}.npz"


class VectorCache:
    """Rows (key, item, vector, payload), grouped by item; `item_rows` maps an item to its row positions."""

    def __init__(self, dim: int, rows: RowBatch, hnsw: Index, config: HnswConfig):
        self.dim = dim
        self.keys = rows.keys.astype(np.uint64)
        self.items = rows.items.astype(object)
        self.vectors = np.ascontiguousarray(rows.vectors, dtype=np.float32).reshape(-1, dim)
        self.payloads = rows.payloads.astype(object)
        self.hnsw = hnsw
        self.config = config
        self._reindex()

    @classmethod
    def empty(cls, dim: int, config: HnswConfig) -> VectorCache:
        return cls(dim, RowBatch.of(dim, [], [], [], []), _new_hnsw(dim, config), config)

    @classmethod
    def load(cls, folder: Path, dim: int, config: HnswConfig) -> VectorCache:
        hnsw = _new_hnsw(dim, config)
        hnsw.load(str(folder / HNSW))
        hnsw.expansion_search = config.expansion_search
        return cls(dim, read_rows(folder, dim, hnsw), hnsw, config)

    @classmethod
    def rebuild(cls, dim: int, rows: Iterable[tuple[int, str]], sources: Sequence[RowBatch], config: HnswConfig) -> VectorCache:
        """The cache for the store's `(row_key, item_id)` rows, taking each row's vector and payload from
        `sources` (the last saved cache, then the pending writes, later ones winning)."""
        keys = np.fromiter((int(k) for k, _ in rows), dtype=np.uint64)
        pool = RowBatch.concat(dim, sources)
        unique, last = np.unique(pool.keys[::-1], return_index=True)
        last = len(pool.keys) - 1 - last
        at = np.minimum(np.searchsorted(unique, keys), max(len(unique) - 1, 0))
        found = (unique[at] == keys) if len(unique) else np.zeros(len(keys), bool)
        if not found.all():
            raise IndexStateError(
                f"the vectors of {int((~found).sum())} stored rows are lost (no vector cache or pending write holds "
                "them); build the index again with: p4r index build"
            )
        picked = last[at]
        cache = cls.empty(dim, config)
        cache.apply((), RowBatch(pool.keys[picked], pool.items[picked], pool.vectors[picked], pool.payloads[picked]))
        return cache

    def save(self, root: Path, generation: int) -> Path:
        """Write to a temporary folder, then rename it into place: the folder is complete or absent.
        Older caches and the pending writes it now contains are removed afterwards."""
        final = cache_dir(root, generation)
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        offsets, blob = _pack(self.payloads)
        np.savez(tmp / ROWS, keys=self.keys, items=_utf8(self.items), payload_offsets=offsets)
        (tmp / PAYLOADS).write_bytes(zlib.compress(blob, 1))  # JSON of similar rows: ~5x smaller
        self.hnsw.save(str(tmp / HNSW))
        names = [ROWS, PAYLOADS, HNSW]
        if self.hnsw.dtype != ScalarKind.F32:  # a quantised graph cannot give the exact vectors back
            np.save(tmp / VECTORS, self.vectors)
            names.append(VECTORS)
        for name in names:
            _fsync(tmp / name)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync(root)
        for old in root.glob(f"{CACHE_PREFIX}*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        for path, gen in pending_files(root):
            if gen <= generation:
                path.unlink(missing_ok=True)
        return final

    # -- changes ----------------------------------------------------------------------------------
    def apply(self, removed_items: Iterable[str], rows: RowBatch) -> None:
        """Drop every row of `removed_items`, then add the new rows."""
        removed = [pos for item in removed_items for pos in self.item_rows.get(item, ())]
        if removed:
            self.hnsw.remove(self.keys[removed])
            keep = np.ones(len(self.keys), dtype=bool)
            keep[removed] = False
            self.keys, self.items, self.vectors = self.keys[keep], self.items[keep], self.vectors[keep]
            self.payloads = self.payloads[keep]
        if len(rows.keys):
            self.hnsw.add(rows.keys, rows.vectors, threads=os.cpu_count() or 1)
            self.keys = np.concatenate([self.keys, rows.keys.astype(np.uint64)])
            self.items = np.concatenate([self.items, rows.items.astype(object)])
            self.vectors = np.concatenate([self.vectors, rows.vectors.reshape(-1, self.dim)])
            self.payloads = np.concatenate([self.payloads, rows.payloads.astype(object)])
        self._reindex()

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Row positions of keys, vectorised (keys are sorted once per change)."""
        return self._key_order[np.searchsorted(self.keys[self._key_order], np.asarray(keys, np.uint64))]

    def _reindex(self) -> None:
        """Group rows by item (stable, so an item's personas keep their order), so that the exact scorer
        works on views of `vectors` without copying them."""
        order = np.argsort(self.items, kind="stable")
        if not (order == np.arange(len(order))).all():  # a loaded cache is grouped already
            self.keys, self.items, self.vectors = self.keys[order], self.items[order], self.vectors[order]
            self.payloads = self.payloads[order]
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

    def rows(self) -> RowBatch:
        return RowBatch(self.keys, self.items, self.vectors, self.payloads)

    @property
    def scorer(self) -> ExactScorer:
        """The exact scorer over every row, built on first use."""
        if self._scorer is None:
            self._scorer = ExactScorer.from_grouped(self._item_ids, self._offsets, self.vectors)
        return self._scorer

    def item_vectors(self, item_id: str) -> np.ndarray | None:
        rows = self.item_rows.get(item_id)
        return None if rows is None else self.vectors[rows]

    def item_payloads(self, item_id: str) -> list[bytes]:
        return list(self.payloads[self.item_rows.get(item_id, np.zeros(0, np.int64))])

    def payload(self, item_id: str, persona_index: int) -> bytes:
        return self.payloads[self.item_rows[item_id][persona_index]]

    def knn_items(self, vector: np.ndarray, rows: int, min_items: int, allowed: set[str] | None,
                  exclude: frozenset[str]) -> list[str]:
        """Items of the `rows` nearest persona rows (as Elasticsearch's `num_candidates`), nearest first.

        While fewer than `min_items` of those items pass the filters, the row search widens (doubling),
        up to every row.
        """
        want = min(rows, len(self))
        while True:
            matches = self.hnsw.search(vector, want)
            found: dict[str, None] = {}
            for item in self.items[self._positions(matches.keys)]:
                if item not in exclude and (allowed is None or item in allowed):
                    found[item] = None
            if len(found) >= min_items or want >= len(self):
                return list(found)
            want = min(want * 2, len(self))


# -- files ------------------------------------------------------------------------------------------
def read_rows(folder: Path, dim: int, hnsw: Index) -> RowBatch:
    """The rows of a saved cache; the vectors come from `vectors.npy` or else from the f32 graph."""
    with np.load(folder / ROWS, allow_pickle=False) as data:
        keys, items, offsets = data["keys"], data["items"], data["payload_offsets"]
    if (folder / VECTORS).exists():
        vectors = np.load(folder / VECTORS)
    else:
        vectors = np.vstack(hnsw.get(keys)) if len(keys) else np.zeros((0, dim), np.float32)
    payloads = _unpack(offsets, zlib.decompress((folder / PAYLOADS).read_bytes()))
    return RowBatch(keys, _objects([s.decode() for s in items.tolist()]), vectors, payloads)


def latest_saved_rows(root: Path, dim: int, config: HnswConfig, up_to: int) -> RowBatch | None:
    """The rows of the newest complete cache folder at or below generation `up_to`, if any."""
    folders = sorted(p for p in root.glob(f"{CACHE_PREFIX}*") if p.is_dir() and int(p.name[len(CACHE_PREFIX):]) <= up_to)
    if not folders:
        return None
    hnsw = _new_hnsw(dim, config)
    hnsw.load(str(folders[-1] / HNSW))
    return read_rows(folders[-1], dim, hnsw)


def write_pending(root: Path, generation: int, rows: RowBatch) -> Path:
    """Save rows durably (temporary file, fsync, rename) before the store commit that refers to them."""
    final = pending_path(root, generation)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    offsets, blob = _pack(rows.payloads)
    with open(tmp, "wb") as f:
        np.savez(f, keys=rows.keys, items=_utf8(rows.items), vectors=rows.vectors, payload_offsets=offsets,
                 payloads=np.frombuffer(blob, np.uint8))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync(root)
    return final


def pending_files(root: Path) -> list[tuple[Path, int]]:
    found = [(p, int(p.name[len(PENDING_PREFIX):].split(".")[0])) for p in root.glob(f"{PENDING_PREFIX}*.npz")]
    return sorted(found, key=lambda pg: pg[1])


def read_pending(path: Path) -> RowBatch:
    with np.load(path, allow_pickle=False) as data:
        items = _objects([s.decode() for s in data["items"].tolist()])
        payloads = _unpack(data["payload_offsets"], data["payloads"].tobytes())
        return RowBatch(data["keys"], items, data["vectors"], payloads)


def _objects(values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _utf8(strings: np.ndarray) -> np.ndarray:
    return np.array([s.encode() for s in strings], dtype=bytes) if len(strings) else np.zeros(0, "S1")


def _pack(blobs: np.ndarray) -> tuple[np.ndarray, bytes]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    return offsets, b"".join(blobs)


def _unpack(offsets: np.ndarray, blob: bytes) -> np.ndarray:
    bounds = offsets.tolist()
    return _objects([blob[a:b] for a, b in pairwise(bounds)])


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
