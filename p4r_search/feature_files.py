"""Feature rows (features.py) as files: JSONL, and SVMlight/RankLib, which the OpenSearch LTR plugin's
training tools, XGBoost and LightGBM read.

SVMlight: `label qid:N 1:v 2:v … # user item`, one line per row; the label is 0 where none was given; feature
1 is the team's score and is left out of a row without one (the readers take a missing feature as 0); the
p4r features follow with their fixed ids (`features.FEATURE_IDS`), zeros written too. Values are written
exactly (Python's shortest round-trip form). A file is written aside and renamed, so it is complete or absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from .features import FEATURE_IDS, TEAM_SCORE_ID, FeatureRow


def number(value: float) -> str:
    """A float as the shortest text that reads back the same; whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _comment_id(value: str | None) -> str:
    """An id in the comment: as is, or as a JSON string where it has spaces, '#' or is absent."""
    if value is None:
        return "-"
    return value if value and not any(c.isspace() or c == "#" for c in value) else json.dumps(value)


def svmlight_line(row: FeatureRow) -> str:
    parts = [str(row.label or 0), f"qid:{row.qid}"]
    if row.team_score is not None:
        parts.append(f"{TEAM_SCORE_ID}:{number(row.team_score)}")
    parts += [f"{FEATURE_IDS[name]}:{number(row.features[name])}" for name in FEATURE_IDS]
    return " ".join(parts) + f" # {_comment_id(row.user_id)} {_comment_id(row.item_id)}\n"


def jsonl_line(row: FeatureRow) -> str:
    return row.model_dump_json() + "\n"


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A file written aside and renamed onto `path` when the block ends without error; removed otherwise."""
    path = Path(path)
    aside = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(aside, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)


class FeatureWriter:
    """Writes rows to a JSONL and/or an SVMlight file (each optional), atomically: `with FeatureWriter(...) as w:
    w.write(rows)`."""

    def __init__(self, jsonl: Path | None = None, svmlight: Path | None = None):
        self.paths = {"jsonl": jsonl, "svmlight": svmlight}
        self._files: dict[str, IO[str]] = {}
        self._stack = ExitStack()
        self.rows = 0

    def __enter__(self):
        for kind, path in self.paths.items():
            if path is not None:
                self._files[kind] = self._stack.enter_context(atomic_text(path))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def write(self, rows: list[FeatureRow]) -> None:
        for row in rows:
            if "jsonl" in self._files:
                self._files["jsonl"].write(jsonl_line(row))
            if "svmlight" in self._files:
                self._files["svmlight"].write(svmlight_line(row))
        self.rows += len(rows)
