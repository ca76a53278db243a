"""Reading and writing JSONL, with errors that name the file, the line and what is wrong.

With `skip_invalid`, a bad line is written to a rejects file (JSONL: file, line, error, raw) and the run
goes on; without it, the first bad line raises `InputError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InputError

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            parts.append(f"missing required field '{loc}'")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown field '{loc}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"field '{loc}': {msg}" if loc else msg)
    return "; ".join(parts)


@dataclass
class Rejects:
    """Collects rejected lines. The file is created on the first reject only."""

    path: Path | None
    count: int = 0
    _fh: IO[str] | None = field(default=None, repr=False)

    def add(self, error: InputError, raw: bytes | str | None = None) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open while lines are rejected)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        record = {"file": error.path, "line": error.line, "error": error.reason, "raw": raw}
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class LineReader:
    """Reads a JSONL file as pydantic models, reporting or rejecting bad lines."""

    def __init__(self, skip_invalid: bool = False, rejects: Rejects | None = None):
        self.skip_invalid = skip_invalid
        self.rejects = rejects or Rejects(None)

    def fail(self, error: InputError, raw: bytes | str | None = None) -> None:
        """Raise, or record and carry on when skipping invalid input."""
        if not self.skip_invalid:
            raise error
        self.rejects.add(error, raw)

    def read(self, path: str | os.PathLike[str], model: type[M]) -> Iterator[tuple[int, M, bytes]]:
        path = Path(path)
        if not path.is_file():
            raise InputError(str(path), None, "no such file")
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    yield line_no, parse_line(raw, model, str(path), line_no), raw
                except InputError as exc:
                    self.fail(exc, raw)


def parse_object(
    raw: bytes, path: str, line_no: int, fallback: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """One line as a JSON object. `fallback(text)` may rescue a line that is not JSON (returning None if not)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, line_no, f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    text = text.rstrip("\r\n")  # else an error at the end of the line is reported at column 1 of the next
    if line_no == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark that some editors write at the start of a file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        data = fallback(text) if fallback is not None else None
        if data is None:
            raise InputError(path, line_no, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InputError(path, line_no, f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_line(raw: bytes, model: type[M], path: str, line_no: int) -> M:
    data = parse_object(raw, path, line_no)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, line_no, describe_validation_error(exc)) from None


def to_json_line(model: BaseModel) -> str:
    return model.model_dump_json(exclude_none=True) + "\n"


def append_line(fh: IO[str], model: BaseModel) -> None:
    """Append one record and make it durable before going on, so a crash never loses finished work."""
    fh.write(to_json_line(model))
    fh.flush()
    os.fsync(fh.fileno())
