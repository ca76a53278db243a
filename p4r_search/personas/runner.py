"""Generate personas for a catalog into a JSONL file, resumably.

Each finished item is appended and fsynced at once, so a killed run loses nothing it finished. A rerun
skips every item already in the output with the same input hash; an item whose reviews or generator
settings changed is generated again and its new line supersedes the old one (the file is compacted at
the end). A torn last line, left by a crash in the middle of a write, is dropped with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from ..io import LineReader, append_line, to_json_line
from ..models import ItemPersonas
from .base import PersonaGenerator, input_hash


@dataclass
class GenerateReport:
    generated: int = 0
    skipped: int = 0
    personas: int = 0


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
) -> GenerateReport:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)
    done = {item_id: r.input_hash for item_id, r in read_personas(out).items()} if out.exists() else {}
    report = GenerateReport()
    superseded = False
    with open(out, "a", encoding="utf-8") as fh:
        for item, reviews in progress(list(catalog)):
            digest = input_hash(item, reviews, generator.info)
            if done.get(item.item_id) == digest:
                report.skipped += 1
                continue
            superseded |= item.item_id in done
            personas = generator.generate(item, reviews)
            record = ItemPersonas(
                item_id=item.item_id,
                personas=personas,
                generator=generator.info,
                input_hash=digest,
                used_review_ids=[r.review_id for r in reviews],
            )
            append_line(fh, record)
            report.generated += 1
            report.personas += len(personas)
    if superseded:
        compact(out)
    return report


def compact(path: Path) -> None:
    """Rewrite the file with one line per item (the latest), atomically."""
    records = read_personas(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(to_json_line(r) for r in records.values())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
