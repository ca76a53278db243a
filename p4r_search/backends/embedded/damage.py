"""The one place where a damaged index file becomes an IndexStateError that names the file and what to do.

numpy, zipfile, zlib, usearch and tantivy each fail in their own way on a damaged file (EOFError,
BadZipFile, zlib.error, RuntimeError, ValueError, a Rust panic); `reading(root, path)` turns all of them
into `INDEX: FILE is damaged (WHAT); REMEDY`. EOFError must not escape: click turns it into a bare
`Aborted!`.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...errors import IndexStateError

DAMAGE = (OSError, ValueError, EOFError, LookupError, RuntimeError, ArithmeticError, zlib.error, zipfile.BadZipFile)
_STORE_FILE = re.compile(r"[0-9a-f]{32}(?:\.\d+)?\.[a-z]+|\.?managed\.json|meta\.json")


def rebuild_hint(root: Path) -> str:
    return (f"rebuild the index: delete {root} and run `p4r index build --personas PERSONAS --items ITEMS "
            f"--index {root}` again")


def repair_hint(root: Path) -> str:
    return f"rebuild it with: p4r index repair --index {root}"


def damaged(root: Path, path: Path, what: str, repairable: bool = False) -> IndexStateError:
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return IndexStateError(f"{root}: {name} is damaged ({what}); {repair_hint(root) if repairable else rebuild_hint(root)}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the file is missing"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def is_damage(exc: BaseException) -> bool:
    # pyo3's PanicException (a Rust panic in tantivy) derives from BaseException
    return isinstance(exc, DAMAGE) or type(exc).__name__ == "PanicException"


@contextmanager
def _as_damage(report: Callable[[BaseException], IndexStateError]) -> Iterator[None]:
    try:
        yield
    except IndexStateError:
        raise
    except BaseException as exc:
        if not is_damage(exc):
            raise
        raise report(exc) from exc


def reading(root: Path, path: Path, repairable: bool = False):
    """Any failure to read `path` (a file of the index at `root`) is reported as that file's damage."""
    return _as_damage(lambda exc: damaged(root, path, describe(exc), repairable))


def reading_store(root: Path, store: Path):
    """A tantivy call: the file is the one tantivy names, else the store folder."""
    def report(exc: BaseException) -> IndexStateError:
        named = _STORE_FILE.search(str(exc))
        return damaged(root, store / named.group(0) if named else store, describe(exc))

    return _as_damage(report)
