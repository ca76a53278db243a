"""The Women's E-Commerce Clothing Reviews Parquet file (CC0) → items and reviews, in the formats of examples/.

The data has no user ids and no dates, so there are no interactions: it serves item personas and the
review → item retrieval evaluation. Records are built exactly as scripts/build_examples.py builds
examples/, so examples/ is a subset of this output (`--top-items 150 --max-reviews-per-item 40` gives it):

- review_id is "r<row number>"; the text is the review title and text joined by ". " (rows without text
  are counted as empty texts and left out); rating is the 1–5 star rating;
- item_id is the Clothing ID; the title is "<class> #<id>"; categories and attributes hold the division,
  department and class (each the value most of the item's kept reviews give); the description is the
  category path, the number of kept reviews and their average rating.

Reading needs pyarrow (the `data` extra). The file is small (23k rows), so its needed columns are read at once.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..io import LineReader, to_json_line
from ..models import Item, Review
from .common import ConvertReport, clean_text, reason_of, refuse_empty, title_and_text
from .selection import Selection, select_items

COLUMNS = ("Clothing ID", "Title", "Review Text", "Rating", "Division Name", "Department Name", "Class Name")
CATEGORY_COLUMNS = (("division", "Division Name"), ("department", "Department Name"), ("class", "Class Name"))


def read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("reading Parquet needs pyarrow: pip install 'p4r-search[data]'") from exc
    if not path.is_file():
        raise InputError(str(path), None, "no such file")
    try:
        return pq.read_table(path, columns=list(COLUMNS)).to_pylist()
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors derive from these
        raise InputError(str(path), None, f"not a readable clothing-reviews Parquet file: {exc}") from None


def to_review(row_no: int, row: dict[str, Any]) -> Review | None:
    """The row's review, or None when it has no text."""
    text = clean_text(row["Review Text"])
    if not text:
        return None
    if row["Clothing ID"] is None:
        raise KeyError("Clothing ID")
    return Review(review_id=f"r{row_no}", item_id=int(row["Clothing ID"]), rating=row["Rating"],
                  text=title_and_text(row["Title"], text))


def most_common(values: list[Any]) -> str | None:
    """The most frequent non-blank value, ties broken alphabetically."""
    counts = Counter(clean_text(v) for v in values if clean_text(v))
    return min(counts, key=lambda value: (-counts[value], value)) if counts else None


def to_item(item_id: str, rows: list[dict[str, Any]], reviews: list[Review]) -> Item:
    attributes = {key: most_common([r[column] for r in rows]) for key, column in CATEGORY_COLUMNS}
    attributes = {key: value for key, value in attributes.items() if value is not None}
    categories = list(attributes.values())
    path = " / ".join(categories) or "Uncategorised"
    mean = sum(r.rating for r in reviews if r.rating is not None) / len(reviews)
    return Item(item_id=item_id, title=f"{attributes.get('class', 'Item')} #{item_id}",
                description=f"{path}, {len(reviews)} reviews, average rating {mean:.1f}",
                categories=categories, attributes=attributes)


def select(by_item: dict[str, list[tuple[dict[str, Any], Review]]], selection: Selection) -> list[str]:
    """Item ids to keep (`select_items`: most reviewed first, ties to the lower id), sorted by id for output."""
    return select_items(sorted(by_item, key=int), {item_id: len(rows) for item_id, rows in by_item.items()}, selection)


def convert_clothing(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    selection: Selection | None = None,
    *,
    reader: LineReader | None = None,
) -> ConvertReport:
    """Write items.jsonl and reviews.jsonl; a bad row is an InputError naming the row (0-based, as in the review ids)."""
    path, out = Path(path), Path(out_dir)
    selection = selection or Selection()
    reader = reader or LineReader()
    report = ConvertReport()
    by_item: dict[str, list[tuple[dict[str, Any], Review]]] = defaultdict(list)
    for row_no, row in enumerate(read_rows(path)):
        report.lines += 1
        try:
            review = to_review(row_no, row)
        except (ValueError, TypeError, KeyError) as exc:
            reader.fail(InputError(str(path), None, f"row {row_no}: {reason_of(exc)}"), repr(row))
            continue
        if review is None:
            report.empty_texts += 1
        else:
            by_item[review.item_id].append((row, review))
    items, reviews = [], []
    for item_id in select(by_item, selection):
        kept = by_item[item_id][: selection.max_reviews_per_item]
        items.append(to_item(item_id, [row for row, _ in kept], [review for _, review in kept]))
        reviews.extend(review for _, review in kept)
    refuse_empty(len(items), report.lines, str(path))
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "items.jsonl", items)
    write_atomically(out / "reviews.jsonl", reviews)
    report.items, report.reviews, report.rejected, report.output = len(items), len(reviews), reader.rejects.count, str(out)
    return report


def write_atomically(path: Path, records: list[Item] | list[Review]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(to_json_line(record) for record in records)
    os.replace(tmp, path)
