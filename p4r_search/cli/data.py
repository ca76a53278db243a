"""`p4r data …`: convert public review datasets into items, reviews and interactions JSONL."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from ..data import ConvertReport, Selection, convert_amazon, convert_clothing, convert_goodreads
from .app import cli
from .options import input_file, json_option, make_reader, report_rejects, skip_invalid_option

out_option = click.option(
    "-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Folder for items.jsonl, reviews.jsonl and interactions.jsonl (replaced only when the run succeeds).",
)
rejects_option = click.option(
    "--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where rejected lines go, with --skip-invalid [default: OUTPUT/rejects.jsonl].",
)
selection_options = [
    click.option("--top-items", type=click.IntRange(min=1), default=None, help="Keep only the N most reviewed items."),
    click.option("--min-reviews", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Keep only items with at least this many reviews with text."),
    click.option("--max-reviews-per-item", type=click.IntRange(min=1), default=None,
                 help="Keep at most this many reviews of each item (the first in the input)."),
]


def with_selection_options(f):
    for option in reversed(selection_options):
        f = option(f)
    return f


@cli.group()
def data() -> None:
    """Convert public review datasets (Amazon, Goodreads, clothing reviews) into p4r's formats.

    Inputs are streamed, plain or gzip. Duplicate (user, item) pairs keep their first line;
    a line without review text is still an interaction; items with no review text at all are
    left out (they can have no personas), with the interactions on them.
    """


def echo_report(report: ConvertReport, as_json: bool) -> None:
    summary = {key: value for key, value in asdict(report).items() if value is not None}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{report.lines} line(s) read: {report.items} items, {report.reviews} reviews, {report.interactions} "
        f"interactions written to {report.output}"
    )
    skipped = {key: summary[key] for key in ("duplicates", "empty_texts", "unrated", "rejected", "items_without_text",
                                             "interactions_dropped", "items_without_meta", "items_not_selected",
                                             "reviews_over_cap") if summary.get(key)}
    if skipped:
        click.echo("  " + ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in skipped.items()))


@data.command("convert-amazon")
@click.argument("reviews", type=input_file)
@click.option("--meta", type=input_file, default=None, help="Amazon metadata JSON lines (titles, categories…).")
@out_option
@with_selection_options
@skip_invalid_option
@rejects_option
@json_option
def convert_amazon_cmd(reviews, meta, out_dir, top_items, min_reviews, max_reviews_per_item, skip_invalid, rejects,
                       as_json):
    """Convert an Amazon review file (2014 or 2018+ release, .json or .json.gz).

    Without --meta, item titles are "Item <asin>". --top-items and --max-reviews-per-item
    make a small slice to try things on: a line whose review is cut goes with its interaction.
    """
    reader = make_reader(skip_invalid, rejects, out_dir / "rejects.jsonl")
    selection = Selection(top_items=top_items, min_reviews=min_reviews, max_reviews_per_item=max_reviews_per_item)
    try:
        report = convert_amazon(reviews, out_dir, meta_path=meta, reader=reader, selection=selection)
    finally:
        report_rejects(reader)
    echo_report(report, as_json)


@data.command("convert-goodreads")
@click.argument("reviews", nargs=-1, required=True, type=input_file)
@out_option
@with_selection_options
@skip_invalid_option
@rejects_option
@json_option
def convert_goodreads_cmd(reviews, out_dir, top_items, min_reviews, max_reviews_per_item, skip_invalid, rejects,
                          as_json):
    """Convert UCSD Goodreads review files (.json or .json.gz), merged into one dataset.

    Rating 0 ("not rated") becomes no rating; titles are "Book <book_id>". --top-items and
    --max-reviews-per-item as for convert-amazon.
    """
    reader = make_reader(skip_invalid, rejects, out_dir / "rejects.jsonl")
    selection = Selection(top_items=top_items, min_reviews=min_reviews, max_reviews_per_item=max_reviews_per_item)
    try:
        report = convert_goodreads(reviews, out_dir, reader=reader, selection=selection)
    finally:
        report_rejects(reader)
    echo_report(report, as_json)


@data.command("convert-clothing")
@click.argument("parquet", type=input_file)
@out_option
@with_selection_options
@skip_invalid_option
@rejects_option
@json_option
def convert_clothing_cmd(parquet, out_dir, top_items, min_reviews, max_reviews_per_item, skip_invalid, rejects,
                         as_json):
    """Convert the Women's E-Commerce Clothing Reviews Parquet file (CC0) to items and reviews.

    No user ids, so no interactions: for personas and `p4r eval retrieval`. Needs pyarrow
    (pip install 'p4r-search[data]'). `--top-items 150 --max-reviews-per-item 40` gives examples/.
    """
    reader = make_reader(skip_invalid, rejects, out_dir / "rejects.jsonl")
    selection = Selection(top_items=top_items, min_reviews=min_reviews, max_reviews_per_item=max_reviews_per_item)
    try:
        report = convert_clothing(parquet, out_dir, selection, reader=reader)
    finally:
        report_rejects(reader)
    echo_report(report, as_json)
