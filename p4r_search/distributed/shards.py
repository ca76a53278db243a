"""The pipeline's output: shards of one line per item, the item's personas and their vectors.

A shard line is a personas line (`ItemPersonas`, what `p4r personas generate` writes) with a `vectors`
field, so `p4r index build --personas FOLDER` indexes the shards without encoding anything again when it
is asked for the same model and kind of persona vector. Each shard is written whole by one worker
(`write_atomically`), so a killed job leaves finished shards and no torn ones. Shard names sort by run and
then by time, so when an item is in two shards (its reviews changed and a later run redid it), the later
line wins, as in a personas file.

No Ray here: `p4r index build` reads shards without it.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..io import LineReader, parse_line, to_json_line
from ..models import ItemPersonas
from .files import Location, list_names, read_bytes, write_atomically

SHARD_PREFIX = "personas-"
FORMATS = ("jsonl", "parquet")
ShardFormat = Literal["jsonl", "parquet"]


class StoredVectors(BaseModel):
    """One unit vector per persona, in the personas' order, and how they were made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="The sentence-transformers model that embedded them.")
    kind: str = Field(description="text, evidence or blend (persona_vectors.py).")
    evidence_prior: float = 0.0
    dim: int = Field(ge=1)
    text_fallbacks: int = Field(default=0, ge=0)
    float32_base64: str = Field(description="Row-major little-endian float32, personas x dim.")

    @classmethod
    def of(cls, vectors: np.ndarray, *, model: str, kind: str, evidence_prior: float, text_fallbacks: int) -> StoredVectors:
        data = np.ascontiguousarray(vectors, dtype="<f4")
        return cls(model=model, kind=kind, evidence_prior=evidence_prior, dim=data.shape[1],
                   text_fallbacks=text_fallbacks, float32_base64=base64.b64encode(data.tobytes()).decode("ascii"))

    def array(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.float32_base64), dtype="<f4").reshape(-1, self.dim).astype(np.float32)

    def matches(self, model: str, kind: str, evidence_prior: float) -> bool:
        return self.model == model and self.kind == kind and (kind == "text" or self.evidence_prior == evidence_prior)


class ShardLine(ItemPersonas):
    """A personas line with its vectors (None in a plain personas file)."""

    vectors: StoredVectors | None = None


def shard_name(run_id: str, fmt: ShardFormat) -> str:
    return f"{SHARD_PREFIX}{run_id}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.{fmt}"


def new_run_id() -> str:
    """Sorts after every earlier run's id (UTC time to the second, then a random tail)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + uuid.uuid4().hex[:4]


def write_shard(directory: Location, run_id: str, lines: list[ShardLine], fmt: ShardFormat) -> str | None:
    if not lines:
        return None
    name = shard_name(run_id, fmt)
    data = _parquet_bytes(lines) if fmt == "parquet" else "".join(to_json_line(line) for line in lines).encode("utf-8")
    write_atomically(directory.child(name), data)
    return name


def _parquet_bytes(lines: list[ShardLine]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "item_id": [line.item_id for line in lines],
        "input_hash": [line.input_hash for line in lines],
        "line": [line.model_dump_json(exclude_none=True) for line in lines],
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def shard_names(directory: Location) -> list[str]:
    return list_names(directory, SHARD_PREFIX, tuple(f".{fmt}" for fmt in FORMATS))


def is_shard_folder(path: str) -> bool:
    location = Location.parse(path)
    from pyarrow.fs import FileType

    return location.filesystem.get_file_info(location.path).type == FileType.Directory


def iter_shard_lines(directory: Location, reader: LineReader | None = None) -> Iterator[ShardLine]:
    """Every line of every shard, oldest shard first."""
    reader = reader or LineReader()
    for name in shard_names(directory):
        location = directory.child(name)
        if name.endswith(".parquet"):
            yield from _parquet_lines(location, reader)
            continue
        for number, raw in enumerate(read_bytes(location).splitlines(keepends=True), start=1):
            if raw.strip():
                try:
                    yield parse_line(raw, ShardLine, location.shown, number)
                except InputError as exc:
                    reader.fail(exc, raw)


def _parquet_lines(location: Location, reader: LineReader) -> Iterator[ShardLine]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(read_bytes(location)), columns=["line"])
    for number, text in enumerate(table.column("line").to_pylist(), start=1):
        try:
            yield parse_line(text.encode("utf-8"), ShardLine, location.shown, number)
        except InputError as exc:
            reader.fail(exc, text)


def read_shards(directory: Location, reader: LineReader | None = None) -> dict[str, ShardLine]:
    """The latest line of each item."""
    return {line.item_id: line for line in iter_shard_lines(directory, reader)}


def done_hashes(directory: Location) -> dict[str, str]:
    """Item id → input hash of what the folder already holds: what a rerun skips."""
    return {item_id: line.input_hash for item_id, line in read_shards(directory).items()}


def jsonl_records(lines: Iterable[dict]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in lines).encode("utf-8")
