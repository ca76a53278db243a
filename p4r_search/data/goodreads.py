"""The UCSD Goodreads review format (Wan and McAuley, 2018) → items, reviews, interactions.

A line: `user_id`, `book_id`, `review_id`, `rating` (1–5; 0 means "no rating"), `review_text`,
`date_added` ("Sun Jul 30 07:44:10 -0700 2017"), `date_updated`, `read_at`, `started_at`, `n_votes`,
`n_comments`. The interaction's time is `date_added` (when the book was shelved; `date_updated` if it is
missing). Several files (e.g. the genre samples) can be converted together; a (user, book) pair or a
review id seen in an earlier line or file is a duplicate. The reviews carry no book titles, so an item's
title is "Book <book_id>".
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..io import LineReader
from ..models import Interaction, Item, Review
from .common import ConvertReport, Record, clean_text, convert_lines, from_format, required, to_number, write_dataset
from .selection import Selection

DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def to_record(data: dict[str, Any]) -> Record:
    user_id, item_id = str(required(data, "user_id")), str(required(data, "book_id"))
    rating = to_number(data.get("rating"), "rating") or None  # 0 is "not rated"
    timestamp = from_format(data.get("date_added"), DATE_FORMAT, "date_added") or from_format(
        data.get("date_updated"), DATE_FORMAT, "date_updated"
    )
    if timestamp is None:
        raise KeyError("date_added")
    interaction = Interaction(user_id=user_id, item_id=item_id, timestamp=timestamp, rating=rating)
    text = clean_text(data.get("review_text"))
    review_id = clean_text(str(data.get("review_id") or "")) or f"{user_id}:{item_id}"
    review = None
    if text:
        review = Review(review_id=review_id, item_id=item_id, user_id=user_id, rating=rating, timestamp=timestamp,
                        text=text)
    return Record(interaction, review)


def convert_goodreads(
    reviews_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    reader: LineReader | None = None,
    selection: Selection | None = None,
) -> ConvertReport:
    reader = reader or LineReader()
    report = ConvertReport()

    def records() -> Iterator[Record]:
        for path in reviews_paths:
            yield from convert_lines(path, reader, to_record, report)

    write_dataset(Path(out_dir), report, records(), lambda item_id: Item(item_id=item_id, title=f"Book {item_id}"),
                  selection=selection, source=", ".join(str(p) for p in reviews_paths))
    report.rejected = reader.rejects.count
    return report
