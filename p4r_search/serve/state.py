"""What a running service holds: the index (one open generation at a time, replaced whole when the index
changes on disk) and the encoder (loaded once, one encode at a time). The users are in a HistoryStore
(p4r_search.events).

A request takes the current `Snapshot` when it starts and keeps it to the end, so a reload never changes
the index under a request in flight; the old generation is dropped when its last request finishes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..backends.base import Backend
from ..encoder import TextEncoder

log = logging.getLogger("p4r.serve")
Fingerprint = tuple[int, ...] | None


@dataclass(frozen=True)
class Snapshot:
    backend: Backend
    generation: int | None
    opened_at: str
    fingerprint: Fingerprint = None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def embedded_fingerprint(path: Path) -> Fingerprint:
    """Changes when a commit lands (tantivy rewrites meta.json) or the directory is replaced (new inode);
    None while the index is missing, e.g. between the two renames of a swap."""
    try:
        folder, meta = os.stat(path), os.stat(path / "store" / "meta.json")
    except FileNotFoundError:
        return None
    return folder.st_ino, meta.st_ino, meta.st_mtime_ns, meta.st_size


def open_embedded(path: Path) -> Snapshot:
    """Open read-only and load the vectors now, so that the first request pays nothing."""
    from ..backends.embedded import EmbeddedBackend

    fingerprint = embedded_fingerprint(path)
    backend = EmbeddedBackend(path)
    backend.vectors()
    return Snapshot(backend, backend.meta.generation, now(), fingerprint)


class ServedIndex:
    """The current snapshot, and `reload_if_changed()` to follow the index on disk (embedded engine)."""

    def __init__(self, snapshot: Snapshot, describe: str, *, path: Path | None = None):
        self.describe = describe
        self.path = path
        self._snapshot = snapshot
        self.reload_error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def embedded(cls, path: str | Path) -> ServedIndex:
        path = Path(path)
        return cls(open_embedded(path), path.name, path=path)  # its name: the answers do not show server paths

    @classmethod
    def cluster(cls, backend: Backend, describe: str) -> ServedIndex:
        return cls(Snapshot(backend, None, now()), describe)

    @property
    def current(self) -> Snapshot:
        return self._snapshot

    def reload_if_changed(self) -> bool:
        """Open the index again when it changed; keep serving the old generation if the new one cannot be
        opened (a write in progress, a half-copied directory) and try again next time."""
        if self.path is None or not self._lock.acquire(blocking=False):
            return False
        try:
            seen = embedded_fingerprint(self.path)
            if seen is None:
                self.reload_error = f"the index {self.describe} is missing; serving generation {self._snapshot.generation}"
                return False
            if seen == self._snapshot.fingerprint:
                self.reload_error = None  # the folder on disk is the served one again
                return False
            try:
                fresh = open_embedded(self.path)
            except Exception as exc:  # noqa: BLE001 (any failure leaves the old generation serving)
                why = str(exc).replace(str(self.path), self.describe)
                self.reload_error = f"cannot open the new index yet: {why}"
                log.warning("reload: %s", self.reload_error)
                return False
            old, self._snapshot, self.reload_error = self._snapshot, fresh, None
            log.info("reload: generation %s -> %s", old.generation, fresh.generation)
            return True
        finally:
            self._lock.release()


class SharedEncoder:
    """One encoder for every request thread; torch runs one encode at a time (parallel calls would only
    fight over the same cores)."""

    def __init__(self, encoder: TextEncoder):
        self._encoder = encoder
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._encoder.model_name

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._encoder.encode(texts)
