"""The Amazon review format (McAuley et al.; the 2014 and 2018+ releases) → items, reviews, interactions.

A review line: `reviewerID`, `asin`, `overall` (the 1–5 rating), `reviewText`, `summary` (its title),
`unixReviewTime` (or only `reviewTime`, "09 1, 2016"). Numbers may be strings ("5.0", "1472688000"). The
2018 variants add `style`, `vote`, `image`, `verified`, `reviewerName`, and may lack `reviewText` or
`summary`; those extra fields are not part of the package's review model and are dropped.

- review_id is "<reviewerID>:<asin>" (the data has no review id; after de-duplication the pair is unique);
- the review text is the summary and the text joined as "summary. text"; a line with neither still counts
  as an interaction, without a review;
- an item's metadata comes from the optional meta file (`title`; `description`, a string or a list of
  strings; `category` (2018) or `categories` (2014, a list of lists); `brand`, `main_cat`, `price` kept as
  attributes). Without it, or for an item missing there, the title is "Item <asin>".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import LineReader
from ..models import Interaction, Item, Review
from .common import (
    ConvertReport,
    Record,
    clean_text,
    convert_lines,
    from_format,
    from_unix,
    required,
    text_list,
    title_and_text,
    to_number,
    write_dataset,
)
from .selection import Selection

REVIEW_TIME_FORMAT = "%m %d, %Y"
META_ATTRIBUTES = ("brand", "main_cat", "price")


def to_record(data: dict[str, Any]) -> Record:
    user_id, item_id = str(required(data, "reviewerID")), str(required(data, "asin"))
    rating = to_number(data.get("overall"), "overall")
    timestamp = from_unix(data.get("unixReviewTime"), "unixReviewTime") or from_format(
        data.get("reviewTime"), REVIEW_TIME_FORMAT, "reviewTime"
    )
    if timestamp is None:
        raise KeyError("unixReviewTime")
    interaction = Interaction(user_id=user_id, item_id=item_id, timestamp=timestamp, rating=rating)
    text = title_and_text(data.get("summary"), data.get("reviewText"))
    review = None
    if text:
        review = Review(review_id=f"{user_id}:{item_id}", item_id=item_id, user_id=user_id, rating=rating,
                        timestamp=timestamp, text=text)
    return Record(interaction, review)


def item_from_meta(data: dict[str, Any]) -> Item:
    item_id = str(required(data, "asin"))
    description = " ".join(text_list(data.get("description"))) or None
    categories = list(dict.fromkeys(text_list(data.get("category") or data.get("categories"))))
    attributes = {key: clean_text(data[key]) for key in META_ATTRIBUTES if clean_text(data.get(key))}
    return Item(item_id=item_id, title=clean_text(data.get("title")) or placeholder_title(item_id),
                description=description, categories=categories, attributes=attributes)


def placeholder_title(item_id: str) -> str:
    return f"Item {item_id}"


def read_meta(path: Path, wanted: set[str], reader: LineReader) -> dict[str, Item]:
    """Metadata of the wanted items only (meta files list far more); the first line of an asin wins."""
    items: dict[str, Item] = {}
    for item in convert_lines(path, reader, item_from_meta, keep=lambda data: str(data.get("asin")) in wanted):
        items.setdefault(item.item_id, item)
    return items


def convert_amazon(
    reviews_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    meta_path: str | os.PathLike[str] | None = None,
    reader: LineReader | None = None,
    selection: Selection | None = None,
) -> ConvertReport:
    reader = reader or LineReader()
    report = ConvertReport()
    meta: dict[str, Item] = {}

    def load_meta(item_ids: set[str]) -> None:
        if meta_path is not None:
            meta.update(read_meta(Path(meta_path), item_ids, reader))
            report.items_without_meta = len(item_ids - meta.keys())

    def make_item(item_id: str) -> Item:
        return meta.get(item_id) or Item(item_id=item_id, title=placeholder_title(item_id))

    records = convert_lines(reviews_path, reader, to_record, report)
    write_dataset(Path(out_dir), report, records, make_item, before_items=load_meta, selection=selection,
                  source=str(reviews_path))
    report.rejected = reader.rejects.count
    return report
