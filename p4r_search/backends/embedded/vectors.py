"""The vector half of the embedded engine: persona vectors and explanation payloads, plus a usearch HNSW graph.

A vector cache is saved under `vectors-<generation>/` (see layout.py) and trusted only when that generation
equals the store's. It holds the only float32 copy of the vectors (`vectors.npy`); the graph (i8 by
default) only proposes rows, and every proposed item is then scored exactly on the float32 vectors.

Since the store does not keep the vectors, a write first saves its new rows as `pending-<generation>.npz`
(the write-ahead file), then commits the store, then saves the cache. After a crash between the last two
steps, the cache is rebuilt from the previous cache plus the pending rows (`rebuild`).

Reading is safe from many threads: a cache's state is built whole before it is published (one attribute,
`_state`), and a read-only cache never changes. A writable cache changes only in `apply`, which readers
in other threads must not overlap (the graph is changed in place).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import IndexStateError
from ...scoring import ExactScorer
from .checksums import verify_folder
from .layout import (
    CACHE_PREFIX,
    HNSW,
    VECTORS,
    Grouped,
    HnswConfig,
    RowBatch,
    cache_dir,
    clean_temporaries,
    fsync,
    new_hnsw,
    pending_files,
    pending_path,
    read_folder,
    read_pending,
    read_rows,
    write_folder,
    write_pending,
)

if TYPE_CHECKING:  # usearch loads on first use: imported before `ray.init`, it aborts Ray's start
    from usearch.index import Index

__all__ = ["HnswConfig", "RowBatch", "VectorCache", "cache_dir", "latest_saved_rows", "pending_files", "pending_path",
           "read_pending", "write_pending"]


class ItemRows(Mapping):
    """item id -> its row positions (a range), computed on lookup instead of held for every item."""

    def __init__(self, index: dict[str, int], offsets: np.ndarray, item_ids: list[str]):
        self._index, self._offsets, self._ids = index, offsets, item_ids

    def __getitem__(self, item_id: str) -> np.ndarray:
        i = self._index[item_id]
        return np.arange(self._offsets[i], self._offsets[i + 1])

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class _State:
    """Everything a reader looks at, derived from the grouped rows with vectorised work only."""

    rows: Grouped
    item_ids: list[str]
    item_rows: ItemRows
    row_item: np.ndarray  # the item number of each row
    sorted_keys: np.ndarray
    scorer: ExactScorer

    @classmethod
    def of(cls, rows: Grouped, source: str) -> _State:
        ids = rows.item_ids.tolist()
        index = {item_id: i for i, item_id in enumerate(ids)}
        row_item = np.repeat(np.arange(len(ids), dtype=np.int64), np.diff(rows.offsets))
        scorer = ExactScorer.from_grouped(ids, rows.offsets, rows.vectors, position=index, source=source)
        return cls(rows, ids, ItemRows(index, rows.offsets, ids), row_item, rows.keys[rows.key_order], scorer)


class VectorCache:
    """Rows (key, item, vector, payload), grouped by item; `item_rows` maps an item to its row positions."""

    def __init__(self, dim: int, rows: Grouped, hnsw: Index, config: HnswConfig, source: str = "the vector cache"):
        """`source`: where the vectors came from, named if they turn out damaged (scoring.py)."""
        self.dim = dim
        self.hnsw = hnsw
        self.config = config
        self.source = source
        self._state = _State.of(rows, source)

    @classmethod
    def empty(cls, dim: int, config: HnswConfig) -> VectorCache:
        return cls(dim, Grouped.of_batch(RowBatch.of(dim, [], [], [], [])), new_hnsw(dim, config), config)

    @classmethod
    def load(cls, folder: Path, dim: int, config: HnswConfig, writable: bool = True,
             full_check: bool | None = None) -> VectorCache:
        """Read-only (`writable=False`), the vectors and graph are memory-mapped: opening costs no per-row work
        (but see checksums.py for `full_check`)."""
        rows, hnsw = read_folder(folder, dim, config, writable, full_check)
        return cls(dim, rows, hnsw, config, source=f"{folder.parent}: {folder.name}/{VECTORS}")

    @classmethod
    def rebuild(cls, dim: int, rows: Iterable[tuple[int, str]], sources: Sequence[RowBatch], config: HnswConfig,
                lost_hint: str = "") -> VectorCache:
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
                f"them{lost_hint}); build the index again with: p4r index build"
            )
        picked = last[at]
        cache = cls.empty(dim, config)
        cache.apply((), RowBatch(pool.keys[picked], pool.items[picked], pool.vectors[picked], pool.payloads[picked]))
        return cache

    def save(self, root: Path, generation: int) -> Path:
        """Write to a temporary folder, then rename it into place: the folder is complete or absent.
        Older caches and the pending writes it now contains are removed afterwards (a reader that mapped an
        older folder keeps reading it: its files live on until unmapped)."""
        final = cache_dir(root, generation)
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        clean_temporaries(root)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write_folder(tmp, self._state.rows, self.hnsw)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        fsync(root)
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
        state = self._state
        removed = [state.item_rows[i] for i in dict.fromkeys(removed_items) if i in state.item_rows]
        kept = state.rows
        if removed:
            gone = np.concatenate(removed)
            self.hnsw.remove(kept.keys[gone])
            keep = np.ones(len(kept.keys), dtype=bool)
            keep[gone] = False
            kept = kept.take(np.flatnonzero(keep))
        if len(rows.keys):
            self.hnsw.add(rows.keys, rows.vectors, threads=os.cpu_count() or 1)
            kept = Grouped.merge(kept, Grouped.of_batch(rows))
        if removed or len(rows.keys):
            self._state = _State.of(kept, self.source)

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._state.rows.keys)

    @property
    def keys(self) -> np.ndarray:
        return self._state.rows.keys

    @property
    def vectors(self) -> np.ndarray:
        return self._state.rows.vectors

    @property
    def items(self) -> np.ndarray:
        """The item id of every row (built on each call: the engine itself works on item numbers)."""
        return self._state.rows.row_items().astype(object)

    @property
    def item_rows(self) -> ItemRows:
        return self._state.item_rows

    @property
    def scorer(self) -> ExactScorer:
        return self._state.scorer

    def rows(self) -> RowBatch:
        return self._state.rows.batch()

    def item_vectors(self, item_id: str) -> np.ndarray | None:
        rows = self._state.item_rows.get(item_id)
        return None if rows is None else np.array(self._state.rows.vectors[rows])

    def item_payloads(self, item_id: str) -> list[bytes]:
        rows = self._state.item_rows.get(item_id)
        return [] if rows is None else [self._payload(r) for r in rows.tolist()]

    def payload(self, item_id: str, persona_index: int) -> bytes:
        return self._payload(int(self._state.item_rows[item_id][persona_index]))

    def _payload(self, row: int) -> bytes:
        rows = self._state.rows
        return rows.blob[rows.payload_offsets[row]:rows.payload_offsets[row + 1]]

    def items_of_keys(self, keys: Sequence[int] | np.ndarray) -> list[str | None]:
        """The item of each row key (None for a key this cache does not hold)."""
        state = self._state
        positions = self._positions(state, keys)
        return [None if p < 0 else state.item_ids[i] for p, i in zip(positions.tolist(), state.row_item[positions].tolist())]

    def items_having_keys(self, keys: np.ndarray) -> set[str]:
        """The items of these row keys (absent keys are skipped)."""
        state = self._state
        positions = self._positions(state, keys)
        return {state.item_ids[n] for n in np.unique(state.row_item[positions[positions >= 0]]).tolist()}

    @staticmethod
    def _positions(state: _State, keys) -> np.ndarray:
        """Row positions of keys, vectorised; -1 for an absent key."""
        keys = np.asarray(keys, np.uint64)
        if not len(state.sorted_keys) or not len(keys):
            return np.full(len(keys), -1, np.int64)
        at = np.minimum(np.searchsorted(state.sorted_keys, keys), len(state.sorted_keys) - 1)
        return np.where(state.sorted_keys[at] == keys, state.rows.key_order[at], -1)

    def knn_items(self, vector: np.ndarray, rows: int, min_items: int, allowed: set[str] | None,
                  exclude: frozenset[str]) -> list[str]:
        """Items of the `rows` nearest persona rows (as Elasticsearch's `num_candidates`), nearest first.

        The graph is asked for at least `expansion_search` rows: its search visits that many anyway, and with
        a quantised graph the nearest few rows by its approximate distance are not always the nearest
        exactly, so the whole beam is rescored. While fewer than `min_items` of those items pass the
        filters, the row search widens (doubling), up to every row.
        """
        state, total = self._state, len(self)
        want = min(max(rows, self.hnsw.expansion_search), total)
        while True:
            matches = self.hnsw.search(vector, want, threads=1)
            numbers = state.row_item[self._positions(state, matches.keys)]
            _, first = np.unique(numbers, return_index=True)
            found = [item for item in (state.item_ids[n] for n in numbers[np.sort(first)].tolist())
                     if item not in exclude and (allowed is None or item in allowed)]
            if len(found) >= min_items or want >= total:
                return found
            want = min(want * 2, total)


def latest_saved_rows(root: Path, dim: int, config: HnswConfig, up_to: int) -> RowBatch | None:
    """The rows of the newest cache folder at or below generation `up_to`, if any, checked in full. Its graph
    is not needed (unless the folder is of the older layout): the vectors are rebuilt into a new one."""
    folders = sorted(p for p in root.glob(f"{CACHE_PREFIX}*") if p.is_dir() and p.name[len(CACHE_PREFIX):].isdigit()
                     and int(p.name[len(CACHE_PREFIX):]) <= up_to)
    if not folders:
        return None
    verify_folder(root, folders[-1], full=True, skip=(HNSW,))
    return read_rows(folders[-1], dim, config, writable=False, check_norms=True).batch()
