"""Generate personas for a catalog into a JSONL file, resumably.

Each finished item is appended and fsynced at once, so a killed run loses nothing it finished. A rerun
skips every item already in the output with the same input hash; an item whose reviews or generator
settings changed is generated again and its new line supersedes the old one (the file is compacted at
the end). A torn last line, left by a crash in the middle of a write, is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..catalog import Catalog
from ..errors import ConfigError
from ..io import LineReader, append_line, to_json_line
from ..models import Item, ItemPersonas
from .base import Generated, GenerationFailed, PersonaGenerator, input_hash


@dataclass
class GenerateReport:
    generated: int = 0
    skipped: int = 0
    personas: int = 0
    failed: int = 0
    other_shards: int = 0
    stopped: str | None = None


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based, as in `--shard 2/4`): a stable hash of the item id decides, so
    every machine agrees on the split without talking to the others."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise ConfigError(f"--shard must be I/N with 1 <= I <= N, e.g. 1/4; got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, item_id: str) -> bool:
        digest = hashlib.sha1(item_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def read_personas(path: str | os.PathLike[str], reader: LineReader | None = None) -> dict[str, ItemPersonas]:
    """Personas by item; when an item appears twice, the later line wins."""
    reader = reader or LineReader()
    return {record.item_id: record for _, record, _ in reader.read(path, ItemPersonas)}


def drop_torn_tail(path: Path) -> bool:
    """Cut a last line that has no newline (an interrupted append). Returns whether it cut anything."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return False
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
    warnings.warn(f"{path}: dropped an incomplete last line left by an interrupted run", stacklevel=2)
    return True


def generate_personas(
    catalog: Catalog,
    generator: PersonaGenerator,
    out_path: str | os.PathLike[str],
    *,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    concurrency: int = 1,
    shard: Shard | None = None,
    failed_path: str | os.PathLike[str] | None = None,
    should_stop: Callable[[], str | None] = lambda: None,
) -> GenerateReport:
    """Generate what is missing, `concurrency` items at a time, appending each finished item at once.

    An item whose generation fails (`GenerationFailed`) goes to `failed_path` (rewritten each run; a rerun
    tries those items again) and the run goes on. Before each new item, `should_stop()` may return a reason
    (e.g. the cost cap): then no new item starts, those in flight finish, and the reason is reported.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)
    done = {item_id: r.input_hash for item_id, r in read_personas(out).items()} if out.exists() else {}
    report = GenerateReport()
    todo = []
    for item, reviews in catalog:
        if shard is not None and not shard.owns(item.item_id):
            report.other_shards += 1
            continue
        digest = input_hash(item, reviews, generator.info)
        if done.get(item.item_id) == digest:
            report.skipped += 1
        else:
            todo.append((item, reviews, digest))
    failures = _FailureLog(Path(failed_path) if failed_path else out.with_name(out.name + ".failed.jsonl"))
    with open(out, "a", encoding="utf-8") as fh, ThreadPoolExecutor(max_workers=concurrency) as pool:
        for item, digest, outcome in progress(_Completions(pool, generator, todo, concurrency, should_stop, report)):
            if isinstance(outcome, GenerationFailed):
                failures.add(outcome, digest)
                report.failed += 1
                continue
            append_line(fh, outcome.line(item.item_id, generator.info, digest))
            report.generated += 1
            report.personas += len(outcome.personas)
    failures.close()
    if any(item.item_id in done for item, _, _ in todo):
        compact(out)
    return report


class _Completions:
    """Keeps up to `limit` items in flight and yields (item, input hash, Generated or GenerationFailed) as each
    finishes. Sized, so a progress bar knows the total."""

    def __init__(self, pool: ThreadPoolExecutor, generator: PersonaGenerator, todo: list, limit: int,
                 should_stop: Callable[[], str | None], report: GenerateReport):
        self.pool, self.generator, self.todo, self.limit = pool, generator, todo, limit
        self.should_stop, self.report = should_stop, report

    def __len__(self) -> int:
        return len(self.todo)

    def __iter__(self) -> Iterator[tuple[Item, str, Generated | GenerationFailed]]:
        pending = iter(self.todo)
        running: dict[Future, tuple[Item, str]] = {}
        try:
            while True:
                while len(running) < self.limit and self.report.stopped is None:
                    if (reason := self.should_stop()) is not None:
                        self.report.stopped = reason
                        break
                    nxt = next(pending, None)
                    if nxt is None:
                        break
                    item, reviews, digest = nxt
                    running[self.pool.submit(self.generator.generate, item, reviews)] = (item, digest)
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    item, digest = running.pop(future)
                    try:
                        yield item, digest, future.result()
                    except GenerationFailed as failure:
                        yield item, digest, failure
        finally:
            for future in running:
                future.cancel()


class _FailureLog:
    def __init__(self, path: Path):
        self.path = path
        path.unlink(missing_ok=True)
        self._fh: IO[str] | None = None

    def add(self, failure: GenerationFailed, digest: str) -> None:
        if self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self._fh.write(json.dumps(failure.record(digest), ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def compact(path: Path) -> None:
    """Rewrite the file with one line per item (the latest), atomically."""
    records = read_personas(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(to_json_line(r) for r in records.values())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
