"""The durable history: every user's interactions and own reviews, in SQLite, written before they are
acknowledged.

Why SQLite in WAL mode: it is in Python, one file beside the index, a commit is durable once `add` returns
(`synchronous=FULL`: the WAL is fsynced at every commit, so not even a power cut loses an acknowledged
batch, and a killed process leaves a batch whole or absent), readers never wait for the writer, and several
service workers and processes on one machine share a store through SQLite's own locks (a writer waits up
to `busy_timeout` for another). Not on a network file system: WAL needs shared memory on one host.

Tables: `history` (one row per interaction: user, item, time; unique per user, item and time, so a
re-seeded or re-sent interaction is one row), `reviews` (the user's latest review of an item), `events`
(each event id with a digest of its content: the same id again is a duplicate, with other content a
conflict), `users` (history lengths, for listing users without a scan).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from ..errors import ConflictError, HistoryStoreError, NotFoundError
from ..models import Interaction, Review
from ..recommend import shown_id
from .models import Event, EventBatchResult

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    ts INTEGER NOT NULL, rating REAL, UNIQUE (user_id, item_id, ts));
CREATE INDEX IF NOT EXISTS history_by_user ON history (user_id, ts, seq);
CREATE TABLE IF NOT EXISTS reviews (
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, review_id TEXT NOT NULL, ts INTEGER, rating REAL,
    text TEXT NOT NULL, PRIMARY KEY (user_id, item_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, interactions INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_by_count ON users (interactions DESC, user_id);
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
BUSY_TIMEOUT_MS = 10_000


class UserHistories(Protocol):
    """Where a user's history and own reviews come from (the store, or the files given at start)."""

    def profile_of(self, user_id: str) -> tuple[tuple[str, ...], dict[str, str]]:
        """History (item ids, oldest first) and reviews (item id → text); NotFoundError for an unknown user."""
        ...

    def user_list(self, limit: int) -> list[tuple[str, int]]:
        """(user id, history length), longest first."""
        ...


def default_history_db(index: str | Path) -> Path:
    """Beside the index, not in it: an index rebuilt or swapped in keeps its users."""
    index = Path(index)
    return index.with_name(f"{index.name}.history.db")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICROSECOND


def _digest(event: Event) -> str:
    return hashlib.sha256(event.model_dump_json().encode()).hexdigest()


class HistoryStore:
    """One store file; safe to share between threads (one connection each) and processes (SQLite's locks)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        with self._errors("open"):
            if not self.path.parent.is_dir():
                raise HistoryStoreError(f"{self.path}: its folder does not exist")
            db = self._db()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryStoreError(f"{self.path}: written by a newer p4r (store version {version}); upgrade")
            if version < SCHEMA_VERSION:
                with self._transaction() as tx:
                    tx.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            self._local.db = db
        return db

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise HistoryStoreError(f"history store {self.path.name}: cannot {doing}: {exc}") from None

    @contextmanager
    def _transaction(self, begin: str = "") -> Iterator[sqlite3.Connection]:
        """`begin` is run first (BEGIN IMMEDIATE for writes, BEGIN for a consistent read); rolled back on error."""
        db = self._db()
        if begin:
            db.execute(begin)
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if db.in_transaction:
            db.execute("COMMIT")

    # writing

    def add(self, events: Sequence[Event]) -> EventBatchResult:
        """Write a batch in one transaction: durable when this returns. An event id the store (or the batch)
        already has is a duplicate; with other content it is a ConflictError and nothing is written."""
        digests = [_digest(e) for e in events]
        with self._errors("write events"), self._transaction("BEGIN IMMEDIATE") as db:
            known = self._known_digests(db, {e.event_id for e in events})
            added = duplicates = 0
            for position, (event, digest) in enumerate(zip(events, digests)):
                prior = known.get(event.event_id)
                if prior is not None:
                    if prior != digest:
                        raise ConflictError(f"events[{position}]: event_id {shown_id(event.event_id)!r} is in the "
                                            "store with other content; nothing of this batch was written", position)
                    duplicates += 1
                    continue
                known[event.event_id] = digest
                db.execute("INSERT INTO events VALUES (?, ?)", (event.event_id, digest))
                changed = self._add_interaction(db, event.interaction())
                if event.type == "review":
                    changed |= self._add_review(db, event.review())
                added += changed
                duplicates += not changed
        return EventBatchResult(added=added, duplicates=duplicates)

    @staticmethod
    def _known_digests(db: sqlite3.Connection, ids: set[str]) -> dict[str, str]:
        ids, known = list(ids), {}
        for start in range(0, len(ids), 500):  # below SQLite's limit of host parameters
            chunk = ids[start:start + 500]
            rows = db.execute(f"SELECT event_id, digest FROM events WHERE event_id IN ({','.join('?' * len(chunk))})",
                              chunk)
            known.update(rows)
        return known

    @staticmethod
    def _add_interaction(db: sqlite3.Connection, interaction: Interaction) -> bool:
        cursor = db.execute("INSERT OR IGNORE INTO history (user_id, item_id, ts, rating) VALUES (?, ?, ?, ?)",
                            (interaction.user_id, interaction.item_id, _micros(interaction.timestamp),
                             interaction.rating))
        if cursor.rowcount:
            db.execute("INSERT INTO users VALUES (?, 1) ON CONFLICT (user_id) DO UPDATE SET "
                       "interactions = interactions + 1", (interaction.user_id,))
        return cursor.rowcount > 0

    @staticmethod
    def _add_review(db: sqlite3.Connection, review: Review) -> bool:
        """The user's latest review of the item wins (a review without a time loses to one with)."""
        ts = None if review.timestamp is None else _micros(review.timestamp)
        cursor = db.execute(
            "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, item_id) DO UPDATE SET "
            "review_id = excluded.review_id, ts = excluded.ts, rating = excluded.rating, text = excluded.text "
            "WHERE coalesce(excluded.ts, -1) >= coalesce(reviews.ts, -1) AND (excluded.text IS NOT reviews.text "
            "OR excluded.review_id IS NOT reviews.review_id)",
            (review.user_id, review.item_id, review.review_id, ts, review.rating, review.text))
        return cursor.rowcount > 0

    def seed(self, interactions: Iterable[Interaction], reviews: Iterable[Review]) -> int:
        """Add the start-up files' rows (in one transaction); rows the store has already change nothing, so
        seeding again at every start is harmless. Reviews attach text to history, as the files do: only
        interactions make history. Returns how many rows were new."""
        with self._errors("seed"), self._transaction("BEGIN IMMEDIATE") as db:
            added = sum(self._add_interaction(db, i) for i in interactions)
            return added + sum(self._add_review(db, r) for r in reviews if r.user_id)

    # reading

    def profile_of(self, user_id: str) -> tuple[tuple[str, ...], dict[str, str]]:
        with self._errors("read"), self._transaction("BEGIN") as db:
            history = tuple(i for (i,) in db.execute(
                "SELECT item_id FROM history WHERE user_id = ? ORDER BY ts, seq", (user_id,)))
            reviews = dict(db.execute("SELECT item_id, text FROM reviews WHERE user_id = ?", (user_id,)))
        if not history and not reviews:
            raise NotFoundError(f"user {shown_id(user_id)!r} has no history (no events, not in --interactions)")
        return history, reviews

    def user_list(self, limit: int) -> list[tuple[str, int]]:
        with self._errors("read"):
            return list(self._db().execute(
                "SELECT user_id, interactions FROM users ORDER BY interactions DESC, user_id LIMIT ?", (limit,)))

    def counts(self) -> dict[str, int]:
        with self._errors("read"), self._transaction("BEGIN") as db:
            return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in ("users", "history", "reviews", "events")}

    def export(self) -> tuple[list[Interaction], list[Review]]:
        """Everything, as the interactions and reviews files have it (one consistent snapshot)."""
        with self._errors("read"), self._transaction("BEGIN") as db:
            interactions = [Interaction(user_id=u, item_id=i, timestamp=_moment(ts), rating=r) for u, i, ts, r in
                            db.execute("SELECT user_id, item_id, ts, rating FROM history ORDER BY user_id, ts, seq")]
            reviews = [Review(review_id=rid, item_id=i, user_id=u, timestamp=_moment(ts), rating=r, text=text)
                       for u, i, rid, ts, r, text in db.execute(
                           "SELECT user_id, item_id, review_id, ts, rating, text FROM reviews ORDER BY user_id, ts")]
        return interactions, reviews

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
