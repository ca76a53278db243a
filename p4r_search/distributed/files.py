"""Paths of the pipeline: local paths or any URI pyarrow's filesystems read (s3://, gs://, hdfs://, file://).

No Ray here: workers and the driver both use these.
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class Location:
    """A file or folder on one filesystem. `shown` is what messages print: the user's own spelling."""

    uri: str
    path: str
    shown: str

    @classmethod
    def parse(cls, text: str | os.PathLike[str]) -> Location:
        text = str(text)
        if "://" in text:
            from pyarrow.fs import FileSystem

            _, path = FileSystem.from_uri(text)
            return cls(text, path, text)
        absolute = str(Path(text).expanduser().resolve())
        return cls(absolute, absolute, text)

    @property
    def filesystem(self):
        from pyarrow.fs import FileSystem, LocalFileSystem

        return LocalFileSystem() if "://" not in self.uri else FileSystem.from_uri(self.uri)[0]

    def child(self, name: str) -> Location:
        join = lambda base: base.rstrip("/") + "/" + name
        return Location(join(self.uri), join(self.path), join(self.shown))


def file_format(name: str) -> str:
    lower = name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise InputError(name, None, f"unknown file type: expected one of {', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}")


def expand(spec: str | os.PathLike[str]) -> list[Location]:
    """The input files of one --items or --reviews value: a file, a folder (its data files, sorted by name)
    or a glob in the last path segment (`reviews/part-*.jsonl`)."""
    from pyarrow.fs import FileSelector, FileType

    text = str(spec)
    pattern = None
    head, _, tail = text.rpartition("/")
    if any(ch in tail for ch in "*?["):
        text, pattern = head or ".", tail
    where = Location.parse(text)
    fs = where.filesystem
    info = fs.get_file_info(where.path)
    if info.type == FileType.File and pattern is None:
        file_format(where.path)
        return [where]
    if info.type != FileType.Directory:
        raise InputError(str(spec), None, "no such file or folder")
    names = sorted(i.base_name for i in fs.get_file_info(FileSelector(where.path)) if i.type == FileType.File
                   and not i.base_name.startswith((".", "_")))
    names = [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else [n for n in names if _is_data(n)]
    if not names:
        raise InputError(str(spec), None, "no data files (.jsonl, .ndjson, .json, .parquet) found")
    return [where.child(name) for name in names]


def _is_data(name: str) -> bool:
    return name.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)


def list_names(directory: Location, prefix: str, suffixes: Sequence[str]) -> list[str]:
    """Names in a folder (none if it does not exist), sorted; files being written (leading dot) are left out."""
    from pyarrow.fs import FileSelector, FileType

    fs = directory.filesystem
    if fs.get_file_info(directory.path).type != FileType.Directory:
        return []
    return sorted(i.base_name for i in fs.get_file_info(FileSelector(directory.path))
                  if i.type == FileType.File and i.base_name.startswith(prefix) and i.base_name.endswith(tuple(suffixes)))


def write_atomically(target: Location, data: bytes) -> None:
    """Whole file or nothing: written beside under a dot-name, then moved into place (a rename on local
    disks; object stores publish an object only once it is complete)."""
    fs = target.filesystem
    parent = target.path.rpartition("/")[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    if "://" not in target.uri:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    fs.move(tmp, target.path)


def read_bytes(location: Location) -> bytes:
    with location.filesystem.open_input_stream(location.path) as stream:
        return stream.read()


def iter_lines(location: Location) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) of a JSONL file, gzip read by its suffix; blank lines skipped."""
    compression = "gzip" if location.path.endswith(".gz") else None
    with location.filesystem.open_input_stream(location.path, compression=compression) as stream:
        buffered = _LineStream(stream)
        for number, raw in enumerate(buffered, start=1):
            if raw.strip():
                yield number, raw


class _LineStream:
    """Lines of a pyarrow input stream, read 1 MiB at a time."""

    def __init__(self, stream, chunk: int = 1 << 20):
        self.stream, self.chunk = stream, chunk

    def __iter__(self) -> Iterator[bytes]:
        rest = b""
        while data := self.stream.read(self.chunk):
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            yield from (line + b"\n" for line in lines)
        if rest:
            yield rest
