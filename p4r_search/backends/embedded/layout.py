"""The files of the embedded engine's vector half, and the row sets they hold.

A saved cache folder `vectors-<generation>/` holds `rows.npz` (keys, item ids and their row offsets, the
keys' sort order, payload offsets), `payloads.zlib`, the usearch graph `hnsw.usearch` and the float32
vectors `vectors.npy`, and last `checksums.json` (each file's size and CRC-32, checked on open: see
checksums.py). A read-only open maps `vectors.npy` and the graph instead of reading them, and does no
per-row Python work. Folders written before `vectors.npy` was always saved (an f32 graph, per-row item ids
in `rows.npz`) still open: their vectors are read back from the graph, row by row, as before. A folder of
the current layout (`item_ids` in rows.npz) without `vectors.npy` is damaged: its graph (i8 by default)
is no copy of the vectors. Any failure to read a file is reported by damage.py, naming the file.

The write-ahead file `pending-<generation>.npz` holds the rows of one write (see vectors.py).
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import checksums
from .checksums import verify_folder, write_manifest
from .damage import damaged, reading

if TYPE_CHECKING:  # usearch loads on first use: imported before `ray.init`, it aborts Ray's start
    from usearch.index import Index

CACHE_PREFIX = "vectors-"
PENDING_PREFIX = "pending-"
ROWS, PAYLOADS, HNSW, VECTORS = "rows.npz", "payloads.zlib", "hnsw.usearch", "vectors.npy"


@dataclass(frozen=True)
class HnswConfig:
    """The graph only proposes rows: every proposed item is then scored exactly on the float32 vectors, so
    an i8 graph (a quarter of the bytes per distance) builds about 4x faster than an f32 one and can afford
    a wider search (128) for the same time (docs/benchmarks.md, issue 12)."""

    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128
    dtype: str = "i8"


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


@dataclass(frozen=True)
class Grouped:
    """Rows grouped by item (item ids sorted; an item's personas in their order): rows
    `offsets[i]:offsets[i+1]` belong to `item_ids[i]`. Payload r is `blob[payload_offsets[r]:payload_offsets[r+1]]`."""

    keys: np.ndarray  # u64, one per row
    vectors: np.ndarray  # float32 rows x dim; a read-only memory map when opened read-only
    item_ids: np.ndarray  # unicode, sorted
    offsets: np.ndarray  # int64, len(item_ids) + 1
    payload_offsets: np.ndarray  # int64, rows + 1
    blob: bytes
    key_order: np.ndarray  # argsort of keys

    @classmethod
    def of(cls, keys: np.ndarray, items: np.ndarray, vectors: np.ndarray, payload_offsets: np.ndarray,
           blob: bytes) -> Grouped:
        """Group rows in any order by item (stable)."""
        ids, codes = np.unique(np.asarray(items, dtype=str), return_inverse=True)
        order = np.argsort(codes, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(ids)))]).astype(np.int64)
        keys = np.asarray(keys, np.uint64)[order]
        payload_offsets, blob = take_segments(payload_offsets, blob, order)
        return cls(keys, np.ascontiguousarray(vectors[order], np.float32), ids, offsets, payload_offsets, blob,
                   np.argsort(keys, kind="stable"))

    @classmethod
    def of_batch(cls, batch: RowBatch) -> Grouped:
        offsets, blob = pack(batch.payloads)
        return cls.of(batch.keys, batch.items, batch.vectors, offsets, blob)

    def row_items(self) -> np.ndarray:
        return np.repeat(self.item_ids, np.diff(self.offsets))

    def batch(self) -> RowBatch:
        payloads = [self.blob[a:b] for a, b in pairwise(self.payload_offsets.tolist())]
        return RowBatch(self.keys, _objects(self.row_items().tolist()), np.asarray(self.vectors), _objects(payloads))

    def take(self, rows: np.ndarray) -> Grouped:
        """A subset of whole items' rows, in order (so still grouped)."""
        items = self.row_items()[rows]
        offsets, blob = take_segments(self.payload_offsets, self.blob, rows)
        return Grouped.of(self.keys[rows], items, np.asarray(self.vectors)[rows], offsets, blob)

    @classmethod
    def merge(cls, a: Grouped, b: Grouped) -> Grouped:
        blob = a.blob + b.blob
        offsets = np.concatenate([a.payload_offsets[:-1], b.payload_offsets + len(a.blob)])
        return cls.of(np.concatenate([a.keys, b.keys]), np.concatenate([a.row_items(), b.row_items()]),
                      np.concatenate([np.asarray(a.vectors), np.asarray(b.vectors)]), offsets, blob)


def pack(blobs: Sequence[bytes]) -> tuple[np.ndarray, bytes]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    return offsets, b"".join(blobs)


def take_segments(offsets: np.ndarray, blob: bytes, rows: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Segments `rows` of a packed blob, concatenated in that order, without a Python loop."""
    rows = np.asarray(rows, np.int64)
    starts, lengths = offsets[:-1][rows], np.diff(offsets)[rows]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    at = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return new_offsets, np.frombuffer(blob, np.uint8)[at].tobytes()


# -- cache folders ------------------------------------------------------------------------------------
def cache_dir(root: Path, generation: int) -> Path:
    return root / f"{CACHE_PREFIX}{generation:08d}"


def write_folder(tmp: Path, rows: Grouped, hnsw: Index) -> None:
    np.savez(tmp / ROWS, keys=rows.keys, item_ids=rows.item_ids, item_offsets=rows.offsets,
             key_order=rows.key_order, payload_offsets=rows.payload_offsets)
    (tmp / PAYLOADS).write_bytes(zlib.compress(rows.blob, 1))  # JSON of similar rows: ~5x smaller
    hnsw.save(str(tmp / HNSW))
    np.save(tmp / VECTORS, np.asarray(rows.vectors, np.float32))
    for name in (ROWS, PAYLOADS, HNSW, VECTORS):
        fsync(tmp / name)
    write_manifest(tmp, (ROWS, PAYLOADS, HNSW, VECTORS))  # last: a folder is checked against it on open


def read_folder(folder: Path, dim: int, config: HnswConfig, writable: bool,
                full_check: bool | None = None) -> tuple[Grouped, Index]:
    """A saved cache. Read-only, the graph and `vectors.npy` are memory-mapped (nothing is copied). Its files
    are checked first (checksums.py; `full_check`: hash them all, None: only when small)."""
    root = folder.parent
    verify_folder(root, folder, full=True if writable else full_check)
    hnsw = open_hnsw(folder / HNSW, config, view=not writable)
    with reading(root, folder / HNSW, repairable=True):
        if hnsw.ndim != dim:
            raise ValueError(f"a graph of {hnsw.ndim}-d vectors; the index holds {dim}-d vectors")
    rows = read_rows(folder, dim, config, writable, hnsw, check_norms=True if writable else full_check)
    with reading(root, folder / HNSW, repairable=True):
        if len(hnsw) != len(rows.keys):
            raise ValueError(f"{len(hnsw)} rows in the graph, {len(rows.keys)} in {ROWS}")
    return rows, hnsw


def read_rows(folder: Path, dim: int, config: HnswConfig, writable: bool, hnsw: Index | None = None,
              check_norms: bool | None = False) -> Grouped:
    """The rows of a saved cache without its graph (which only the older layout needs: its vectors are there).
    `check_norms`: that every vector is unit-length (None: only when they are small, as checksums.py hashes)."""
    root = folder.parent
    with reading(root, folder / ROWS):
        with np.load(folder / ROWS, allow_pickle=False) as data:
            fields = {name: data[name] for name in data.files}
        keys = fields["keys"].astype(np.uint64, copy=False)
        if "item_ids" in fields:
            ids, offsets = fields["item_ids"], fields["item_offsets"].astype(np.int64)
        else:  # the older layout: one item id (utf-8 bytes) per row, rows already grouped
            ids, offsets = _groups(fields["items"])
        key_order = fields["key_order"] if "key_order" in fields else np.argsort(keys, kind="stable")
        payload_offsets = fields["payload_offsets"].astype(np.int64)
        _check_rows(len(keys), ids, offsets, key_order, payload_offsets)
    vectors = _read_vectors(folder, fields, keys, dim, config, writable, hnsw)
    if check_norms or (check_norms is None and vectors.nbytes <= checksums.FULL_CHECK_BYTES):
        with reading(root, folder / VECTORS if (folder / VECTORS).exists() else folder / HNSW):
            _check_unit(vectors)
    with reading(root, folder / PAYLOADS):
        blob = zlib.decompress((folder / PAYLOADS).read_bytes())
        if len(blob) != payload_offsets[-1]:
            raise ValueError(f"{len(blob)} bytes of payloads, {payload_offsets[-1]} in {ROWS}")
    return Grouped(keys, vectors, ids, offsets, payload_offsets, blob, key_order)


def _check_rows(n: int, ids: np.ndarray, offsets: np.ndarray, key_order: np.ndarray, payload_offsets: np.ndarray) -> None:
    if len(offsets) != len(ids) + 1 or offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise ValueError("its item offsets do not fit its rows")
    if len(key_order) != n or (n and not 0 <= key_order.min() <= key_order.max() < n):
        raise ValueError("its key order does not fit its rows")
    if len(payload_offsets) != n + 1 or payload_offsets[0] != 0 or (np.diff(payload_offsets) < 0).any():
        raise ValueError("its payload offsets do not fit its rows")


def _check_unit(vectors: np.ndarray, chunk: int = 65_536) -> None:
    for start in range(0, len(vectors), chunk):
        block = np.asarray(vectors[start:start + chunk], np.float32)
        norms = np.einsum("ij,ij->i", block, block)
        if (bad := np.flatnonzero(~(np.abs(norms - 1) <= 2e-3))).size:  # NaN is bad too
            raise ValueError(f"row {start + int(bad[0])} is not a unit vector (squared norm {norms[bad[0]]:.4g})")


def _read_vectors(folder: Path, fields: dict, keys: np.ndarray, dim: int, config: HnswConfig, writable: bool,
                  hnsw: Index | None) -> np.ndarray:
    path, root = folder / VECTORS, folder.parent
    if path.exists():
        with reading(root, path):
            vectors = np.load(path, mmap_mode=None if writable else "r", allow_pickle=False)
            if vectors.dtype != np.float32 or vectors.shape != (len(keys), dim):
                raise ValueError(f"{vectors.dtype} {vectors.shape}; {len(keys)} float32 rows of {dim} expected")
        return vectors
    if "item_ids" in fields:  # the current layout: the graph (i8 by default) is no copy of the vectors
        raise damaged(root, path, "the file is missing")
    hnsw = hnsw if hnsw is not None else open_hnsw(folder / HNSW, config, view=True)
    if "f32" not in str(hnsw.dtype).lower():
        raise damaged(root, path, f"the file is missing, and the {hnsw.dtype} graph holds no exact vectors")
    with reading(root, folder / HNSW):  # an f32 graph of the older layout is the only copy of the vectors
        return np.vstack(hnsw.get(keys)) if len(keys) else np.zeros((0, dim), np.float32)


def _groups(row_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(row_items):
        return np.zeros(0, "U1"), np.zeros(1, np.int64)
    bounds = np.flatnonzero(row_items[1:] != row_items[:-1]) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    ids = np.array([s.decode() for s in row_items[starts].tolist()], dtype=str)
    return ids, np.concatenate([starts, [len(row_items)]]).astype(np.int64)


def new_hnsw(dim: int, config: HnswConfig) -> Index:
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype=config.dtype, connectivity=config.connectivity,
                 expansion_add=config.expansion_add, expansion_search=config.expansion_search)


def open_hnsw(path: Path, config: HnswConfig, view: bool) -> Index:
    """The saved graph, with the kind of vectors it was built with (whatever `config.dtype` says now)."""
    from usearch.index import Index

    with reading(path.parent.parent, path, repairable=True):
        hnsw = Index.restore(str(path), view=view)
        if hnsw is None:
            raise FileNotFoundError(path)
    hnsw.expansion_add = config.expansion_add
    hnsw.expansion_search = config.expansion_search
    return hnsw


# -- write-ahead files ----------------------------------------------------------------------------------
def pending_path(root: Path, generation: int) -> Path:
    return root / f"{PENDING_PREFIX}{generation:08d}.npz"


def write_pending(root: Path, generation: int, rows: RowBatch) -> Path:
    """Save rows durably (temporary file, fsync, rename) before the store commit that refers to them."""
    final = pending_path(root, generation)
    clean_temporaries(root)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    offsets, blob = pack(rows.payloads)
    with open(tmp, "wb") as f:
        np.savez(f, keys=rows.keys, items=_utf8(rows.items), vectors=rows.vectors, payload_offsets=offsets,
                 payloads=np.frombuffer(blob, np.uint8))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync(root)
    return final


def pending_files(root: Path) -> list[tuple[Path, int]]:
    found = [(p, int(p.name[len(PENDING_PREFIX):].split(".")[0])) for p in root.glob(f"{PENDING_PREFIX}*.npz")]
    return sorted(found, key=lambda pg: pg[1])


def read_pending(path: Path, dim: int) -> RowBatch:
    with reading(path.parent, path), np.load(path, allow_pickle=False) as data:
        items = _objects([s.decode() for s in data["items"].tolist()])
        offsets, blob = data["payload_offsets"].tolist(), data["payloads"].tobytes()
        payloads = _objects([blob[a:b] for a, b in pairwise(offsets)])
        keys, vectors = data["keys"], data["vectors"]
        if not len(keys) == len(items) == len(payloads) or vectors.shape != (len(keys), dim):
            raise ValueError(f"{len(keys)} keys, {len(items)} items, {len(payloads)} payloads, vectors {vectors.shape}")
        return RowBatch(keys, items, vectors, payloads)


def clean_temporaries(root: Path) -> None:
    """Remove what a killed write left (`.tmp-NAME-PID`): temporaries of processes that are no longer alive."""
    for path in root.glob(".tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _objects(values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _utf8(strings: np.ndarray) -> np.ndarray:
    return np.array([s.encode() for s in strings], dtype=bytes) if len(strings) else np.zeros(0, "S1")


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
