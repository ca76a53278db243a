"""What every converter shares: reading exported JSON lines, coercing messy values, and writing the
package's items, reviews and interactions JSONL with duplicates removed.

Reading streams the input line by line (gzip is detected by its magic bytes, not by the file name). A bad
line raises `InputError(path, line, reason)`, or, when the reader skips invalid input, goes to its rejects
file. Writing goes to hidden temporary files in the output folder, renamed into place only when the whole
conversion succeeded, so a failed run never leaves half-written files that look finished.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import zlib
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import ValidationError

from ..errors import InputError
from ..io import LineReader, describe_validation_error, to_json_line
from ..io import parse_object as io_parse_object
from ..models import Interaction, Item, Review
from .selection import Selection, cut_reviews, select_items

GZIP_MAGIC = b"\x1f\x8b"
OUTPUT_FILES = ("items.jsonl", "reviews.jsonl", "interactions.jsonl")
T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """One review line of a source, in the package's terms. `review` is None when the line has no text."""

    interaction: Interaction
    review: Review | None


@dataclass
class ConvertReport:
    lines: int = 0
    items: int = 0
    reviews: int = 0
    interactions: int = 0
    duplicates: int = 0
    empty_texts: int = 0
    unrated: int = 0
    rejected: int = 0
    items_without_text: int = 0
    interactions_dropped: int = 0
    items_without_meta: int | None = None  # formats with a metadata file only
    items_not_selected: int | None = None  # with a Selection: items left out by --top-items / --min-reviews
    reviews_over_cap: int | None = None  # with a Selection: reviews of kept items past --max-reviews-per-item
    output: str = ""


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip, whatever its name."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def read_objects(path: str | os.PathLike[str], reader: LineReader) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    """(line number, object, raw line) for each non-blank line; bad lines are raised or rejected by `reader`.

    The 2014 Amazon release writes Python dict literals rather than JSON; those are read too (safely, with
    `ast.literal_eval`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), None, "no such file")
    line_no = 0
    with open_binary(path) as fh:
        try:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    yield line_no, parse_object(raw, str(path), line_no), raw
                except InputError as exc:
                    reader.fail(exc, raw)
        except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
            raise InputError(str(path), line_no + 1, f"unreadable compressed data: {exc}") from None


def parse_object(raw: bytes, path: str, line_no: int) -> dict[str, Any]:
    """A JSON object, or a Python dict literal (the 2014 Amazon metadata files are written that way)."""
    return io_parse_object(raw, path, line_no, fallback=_python_literal)


def _python_literal(text: str) -> Any:
    if not text.lstrip().startswith("{"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def convert_lines(
    path: str | os.PathLike[str],
    reader: LineReader,
    convert: Callable[[dict[str, Any]], T],
    report: ConvertReport | None = None,
    keep: Callable[[dict[str, Any]], bool] = lambda data: True,
) -> Iterator[T]:
    """Each kept line, converted; a line that `convert` refuses is an InputError naming file and line.
    Lines are counted in `report` when one is given."""
    for line_no, data, raw in read_objects(path, reader):
        if report is not None:
            report.lines += 1
        if not keep(data):
            continue
        try:
            yield convert(data)
        except (ValueError, TypeError, KeyError) as exc:
            reader.fail(InputError(str(path), line_no, reason_of(exc)), raw)


def reason_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    if isinstance(exc, KeyError):
        return f"missing required field {exc.args[0]!r}"
    return str(exc)


def required(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise KeyError(key)
    return value


def to_number(value: Any, what: str) -> float | None:
    """A number, also from a string such as "5.0"; None for missing or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise TypeError(f"field '{what}': expected a number, got a boolean")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"field '{what}': expected a number, got {value!r}") from None


def from_unix(value: Any, what: str) -> datetime | None:
    seconds = to_number(value, what)
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def from_format(value: Any, fmt: str, what: str) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        parsed = datetime.strptime(str(value).strip(), fmt)
    except ValueError:
        raise ValueError(f"field '{what}': cannot read the date {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def clean_text(value: Any) -> str:
    """Text with whitespace runs kept but the ends stripped; '' for missing or non-text values."""
    return value.strip() if isinstance(value, str) else ""


def title_and_text(title: Any, text: Any) -> str:
    """A review's title and text joined by '. ' (a space when the title already ends a sentence)."""
    title, text = clean_text(title), clean_text(text)
    if not title or not text:
        return title or text
    return f"{title} {text}" if title[-1] in ".!?" else f"{title}. {text}"


def text_list(value: Any) -> list[str]:
    """Strings from a string, a list, or a list of lists (the 2014 Amazon `categories`), blanks dropped."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list | tuple):
        return [s for v in value for s in text_list(v)]
    return []


class DatasetWriter:
    """Writes reviews and interactions as they come, keeping the first of duplicate (user, item) pairs.

    The first in input order is kept, so that the output needs no look-ahead and is deterministic; a pair is
    also a duplicate when its review id was already written.
    """

    def __init__(self, reviews: IO[str], interactions: IO[str], report: ConvertReport):
        self._reviews = reviews
        self._interactions = interactions
        self.report = report
        self._pairs: set[tuple[str, str]] = set()
        self._review_ids: set[str] = set()
        self.items_seen: dict[str, None] = {}  # insertion-ordered
        self.items_with_text: dict[str, int] = {}  # item id → reviews with text written

    def add(self, record: Record) -> None:
        interaction, review = record.interaction, record.review
        pair = (interaction.user_id, interaction.item_id)
        if pair in self._pairs or (review is not None and review.review_id in self._review_ids):
            self.report.duplicates += 1
            return
        self._pairs.add(pair)
        self.items_seen.setdefault(interaction.item_id, None)
        self.report.unrated += interaction.rating is None
        self._interactions.write(to_json_line(interaction))
        if review is None:
            self.report.empty_texts += 1
            return
        self._review_ids.add(review.review_id)
        self.items_with_text[review.item_id] = self.items_with_text.get(review.item_id, 0) + 1
        self._reviews.write(to_json_line(review))
        self.report.reviews += 1


def write_dataset(
    out_dir: Path,
    report: ConvertReport,
    records: Iterable[Record],
    make_item: Callable[[str], Item],
    before_items: Callable[[set[str]], None] = lambda ids: None,
    selection: Selection | None = None,
    source: str = "the input",
) -> ConvertReport:
    """Stream `records` into OUT_DIR's items, reviews and interactions JSONL.

    Items are written at the end, only those with at least one review text (an item without text can have
    no personas, and the catalog loader refuses it); interactions on other items are dropped and counted, so
    the three files are always consistent. `before_items` sees the ids of the items that will be written
    (to read their metadata) before `make_item` is called for each. A `selection` keeps only its items and
    caps their reviews; a review cut by the cap takes its interaction along, as if its line were not in the input.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {name: out_dir / f".{name}.tmp" for name in OUTPUT_FILES}
    try:
        with open(tmp["reviews.jsonl"], "w", encoding="utf-8") as reviews, open(
            tmp["interactions.jsonl"], "w", encoding="utf-8"
        ) as interactions:
            writer = DatasetWriter(reviews, interactions, report)
            for record in records:
                writer.add(record)
        kept = [item_id for item_id in writer.items_seen if item_id in writer.items_with_text]
        report.items_without_text = len(writer.items_seen) - len(kept)
        cut: set[tuple[str, str]] = set()
        if selection is not None and selection.active:
            kept, cut = apply_selection(selection, kept, writer.items_with_text, tmp["reviews.jsonl"], report)
        refuse_empty(len(kept), report.lines, source)
        before_items(set(kept))
        with open(tmp["items.jsonl"], "w", encoding="utf-8") as fh:
            fh.writelines(to_json_line(make_item(item_id)) for item_id in kept)
        report.items = len(kept)
        report.interactions, report.interactions_dropped = keep_interactions_on(tmp["interactions.jsonl"], set(kept),
                                                                                cut)
    except BaseException:
        for path in [*tmp.values(), *(kept_path(tmp[name]) for name in ("interactions.jsonl", "reviews.jsonl"))]:
            path.unlink(missing_ok=True)  # files of an earlier successful run stay as they were
        raise
    for name, path in tmp.items():
        os.replace(path, out_dir / name)
    report.output = str(out_dir)
    return report


def refuse_empty(items: int, lines: int, source: str) -> None:
    """An input that yields no item is a mistake (an empty or wrong file), never a reason to empty a folder."""
    if not items:
        raise InputError(source, None, f"no item with a review text in {lines} line(s) read; nothing was written "
                                       "and the output folder is unchanged")


def apply_selection(selection: Selection, items: list[str], review_counts: dict[str, int], reviews_path: Path,
                    report: ConvertReport) -> tuple[list[str], set[tuple[str, str]]]:
    """The selected items, and the (user, item) pairs whose reviews the cap cut; the reviews file is cut to the
    selected items' reviews, capped, and the report says what went."""
    selected = select_items(items, review_counts, selection)
    report.items_not_selected = len(items) - len(selected)
    report.reviews, cut = cut_reviews(reviews_path, set(selected), selection.max_reviews_per_item)
    report.reviews_over_cap = len(cut)
    return selected, cut


def kept_path(path: Path) -> Path:
    return path.with_name(path.name + ".kept")


def keep_interactions_on(path: Path, items: set[str], skip: Container[tuple[str, str]] = ()) -> tuple[int, int]:
    """Rewrite the interactions file keeping only those on `items`, except the (user, item) pairs in `skip`;
    returns (kept, dropped)."""
    filtered = kept_path(path)
    kept = dropped = 0
    with open(path, encoding="utf-8") as src, open(filtered, "w", encoding="utf-8") as dst:
        for line in src:
            interaction = json.loads(line)
            if interaction["item_id"] in items and (interaction["user_id"], interaction["item_id"]) not in skip:
                dst.write(line)
                kept += 1
            else:
                dropped += 1
    os.replace(filtered, path)
    return kept, dropped
