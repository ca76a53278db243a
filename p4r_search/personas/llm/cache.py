"""An on-disk cache of validated model answers, keyed by everything that determines them.

The key hashes the prompt version, the model, the sampling parameters and the rendered request (which
holds the input), so a rerun with the same settings makes no request at all, and any change misses.
One small JSON file per answer, written atomically, so concurrent workers and killed runs never leave a
torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "p4r-search" / "llm"


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | os.PathLike[str] | None):
        self.directory = Path(directory) if directory is not None else None

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        if self.directory is None:
            return None
        try:
            return json.loads(self._path(key).read_text("utf-8"))["content"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, content: str) -> None:
        if self.directory is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(content)}.tmp")
        tmp.write_text(json.dumps({"content": content}, ensure_ascii=False), "utf-8")
        os.replace(tmp, path)
