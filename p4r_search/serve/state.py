"""What a running service holds: the index (one open generation at a time, replaced whole when the index
changes on disk), the encoder (loaded once, one encode at a time) and the users of an interactions file.

A request takes the current `Snapshot` when it starts and keeps it to the end, so a reload never changes
the index under a request in flight; the old generation is dropped when its last request finishes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..backends.base import Backend
from ..encoder import TextEncoder
from ..errors import NotFoundError
from ..recommend import shown_id

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


@dataclass
class Users:
    """Histories (oldest first) and own reviews of the users of the files given at start."""

    histories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reviews: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def load(cls, interactions: Path | None, reviews: Path | None = None) -> Users:
        """Bad lines are errors (file, line, what is wrong), raised before the service listens."""
        from ..catalog import load_interactions
        from ..io import LineReader
        from ..models import Review

        histories: dict[str, tuple[str, ...]] = {}
        if interactions is not None:
            by_user = load_interactions(interactions, LineReader())
            histories = {u: tuple(i.item_id for i in rows) for u, rows in by_user.items()}
        own: dict[str, dict[str, str]] = defaultdict(dict)
        if reviews is not None:
            for _, review, _ in LineReader().read(reviews, Review):
                if review.user_id:
                    own[review.user_id][review.item_id] = review.text
        return cls(histories, dict(own), str(interactions) if interactions else None)

    def history(self, user_id: str) -> tuple[str, ...]:
        if user_id not in self.histories:
            where = "the interactions file" if self.source else "any interactions file (start the service with " \
                "--interactions to look users up)"
            raise NotFoundError(f"user {shown_id(user_id)!r} is not in {where}")
        return self.histories[user_id]
