"""Checks that an index's files are the ones that were written, before anything reads them.

A cache folder's `checksums.json` (written last at commit) holds each file's size and CRC-32. tantivy
ends each segment file with a footer holding the CRC-32 of the bytes before it, but checks it only on
request (not on open), and some damage makes it panic: so the store's segment files are checked here.

Sizes and footers are checked on every open. A CRC reads the whole file (about 1.4 GB/s here), which a
read-only open otherwise avoids (the vectors and graph are memory-mapped), so on a read-only open the CRCs
are computed only while the files to hash total at most FULL_CHECK_BYTES; a writable open (which reads
everything anyway), `p4r index repair` and `p4r index info --check` always compute them. Files that every
open reads whole (rows.npz, payloads.zlib) are always hashed. A folder without a manifest (written before
it existed) is not checked.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from ...errors import IndexStateError
from .damage import damaged, reading

MANIFEST = "checksums.json"
FULL_CHECK_BYTES = 64 * 1024 * 1024  # ~50 ms of CRC-32 here
CHUNK = 1 << 20
ALWAYS_HASHED = ("rows.npz", "payloads.zlib")
_FOOTER_MAGIC = 1337  # tantivy's
_SEGMENT_PARTS = (".fast", ".fieldnorm", ".idx", ".pos", ".store", ".term")


def crc32(path: Path, end: int | None = None) -> int:
    """CRC-32 of the file (its first `end` bytes), in 1 MiB chunks."""
    crc, left = 0, os.path.getsize(path) if end is None else end
    with open(path, "rb") as f:
        while left > 0 and (chunk := f.read(min(CHUNK, left))):
            crc, left = zlib.crc32(chunk, crc), left - len(chunk)
    return crc


def write_manifest(folder: Path, names: Iterable[str]) -> Path:
    files = {name: {"size": (folder / name).stat().st_size, "crc32": crc32(folder / name)} for name in names}
    path = folder / MANIFEST
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"format": 1, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def verify_folder(root: Path, folder: Path, full: bool | None, skip: Iterable[str] = ()) -> None:
    """Raise IndexStateError naming the first file of the cache folder that is not as written.
    `full`: hash every file (None: only when they are small); `skip`: files not to check."""
    path = folder / MANIFEST
    if not path.exists():
        return
    with reading(root, path):
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        expected = {str(name): (int(v["size"]), int(v["crc32"])) for name, v in files.items()}
    expected = {name: v for name, v in expected.items() if name not in skip}
    for name, (size, _) in expected.items():
        with reading(root, folder / name, repairable=name == "hnsw.usearch"):
            actual = (folder / name).stat().st_size
        if actual != size:
            raise damaged(root, folder / name, f"{actual} bytes, {size} written", repairable=name == "hnsw.usearch")
    mapped = sum(size for name, (size, _) in expected.items() if name not in ALWAYS_HASHED)
    hash_all = full if full is not None else mapped <= FULL_CHECK_BYTES
    for name, (_, crc) in expected.items():
        if (hash_all or name in ALWAYS_HASHED) and crc32(folder / name) != crc:
            raise damaged(root, folder / name, "its checksum differs from the one written",
                          repairable=name == "hnsw.usearch")


def verify_store(root: Path, store: Path, full: bool | None) -> None:
    """The files tantivy's meta.json names exist, end with a sound footer and (see above) match its CRC. A
    file that vanished because another process's commit replaced its segment is no damage: check again."""
    for attempt in range(3):
        meta = _read_text(root, store / "meta.json")
        try:
            return _verify_segments(root, store, meta, full)
        except IndexStateError:
            if attempt == 2 or _read_text(root, store / "meta.json") == meta:
                raise


def _read_text(root: Path, path: Path) -> str:
    with reading(root, path):
        return path.read_text(encoding="utf-8")


def _verify_segments(root: Path, store: Path, meta_text: str, full: bool | None) -> None:
    with reading(root, store / "meta.json"):
        files = [store / name for segment in json.loads(meta_text)["segments"] for name in _segment_files(segment)]
    sizes = {}
    for path in files:
        with reading(root, path):
            sizes[path] = path.stat().st_size
    hash_all = full if full is not None else sum(sizes.values()) <= FULL_CHECK_BYTES
    for path in files:
        with reading(root, path):
            _check_footer(path, sizes[path], hash_all)


def _segment_files(segment: dict) -> list[str]:
    stem = str(segment["segment_id"]).replace("-", "")
    names = [stem + part for part in _SEGMENT_PARTS]
    if segment.get("deletes"):
        names.append(f"{stem}.{int(segment['deletes']['opstamp'])}.del")
    return names


def _check_footer(path: Path, size: int, check_crc: bool) -> None:
    if size < 8:
        raise ValueError(f"{size} bytes: shorter than a tantivy footer")
    with open(path, "rb") as f:
        f.seek(size - 8)
        length, magic = struct.unpack("<II", f.read(8))
        if magic != _FOOTER_MAGIC or length > size - 8:
            raise ValueError("its tantivy footer is not where the file ends")
        f.seek(size - 8 - length)
        crc = int(json.loads(f.read(length))["crc"])
    if check_crc and crc32(path, size - 8 - length) != crc:
        raise ValueError("its checksum differs from the one tantivy wrote")
