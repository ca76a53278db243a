"""`p4r eval retrieval`: review → item retrieval on a catalog without user ids (see evaluation/retrieval.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..catalog import load_catalog
from ..encoder import Encoder
from ..evaluation.embedding_cache import CachedEncoder
from ..evaluation.retrieval import RetrievalConfig, describe_comparisons, markdown_table, run_retrieval
from ..personas import GENERATORS
from .evaluate import evaluate
from .options import (
    FiniteFloatRange,
    json_option,
    make_reader,
    model_option,
    progress_bar,
    progress_option,
    report_rejects,
    skip_invalid_option,
)


@evaluate.command("retrieval")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder with items.jsonl and reviews.jsonl (e.g. from `p4r data convert-clothing`).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.json, results.md, personas.jsonl and the embedding cache.")
@click.option("--holdout", "fraction", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of each item's reviews held out as queries.")
@click.option("--min-reviews", type=click.IntRange(min=2), default=5, show_default=True,
              help="Items with fewer reviews give no queries (they stay as candidates).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hold-out and of the generator.")
@click.option("--generator", type=click.Choice(GENERATORS), default="extractive", show_default=True)
@model_option
@skip_invalid_option
@progress_option
@json_option
def retrieval(data_dir, out_dir, fraction, min_reviews, seed, generator, model, skip_invalid, progress, as_json):
    """Hold out part of each item's reviews, build personas from the rest, and rank the whole
    catalog for each held-out review; its own item is the one relevant answer.

    Reports Recall, NDCG and MRR at 5/10/20 for persona max-sim, the single-vector item
    embedding, BM25 (over persona texts, and over training-review texts) and hybrid
    (persona + BM25 over persona texts). Rerunning reuses the personas and the cached vectors.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    reader = make_reader(skip_invalid, None, out_dir / "rejects.jsonl")
    catalog = load_catalog(data_dir / "items.jsonl", data_dir / "reviews.jsonl", reader)
    report_rejects(reader)
    encoder = CachedEncoder(Encoder(model), out_dir / "embeddings.sqlite")
    config = RetrievalConfig(fraction=fraction, min_reviews=min_reviews, seed=seed, generator=generator)
    report = run_retrieval(catalog, out_dir, encoder, config, progress=progress_bar(progress, "personas"))
    report.config["data"] = str(data_dir)
    report.summary["rejected_lines"] = reader.rejects.count
    table = markdown_table(report.results) + "\n" + describe_comparisons(report.summary["comparisons"])
    (out_dir / "results.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(results_markdown(report.summary, table), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(table, nl=False)
        click.echo(summary_line(report.summary) + f"; written to {out_dir}/results.json and results.md")


def summary_line(summary: dict) -> str:
    return (f"{summary['queries']} queries (held-out reviews) on {summary['items_with_queries']} items, ranked "
            f"among {summary['items']} items ({summary['items_without_queries']} too small to query)")


def results_markdown(summary: dict, table: str) -> str:
    return f"# Review → item retrieval\n\n{summary_line(summary)}.\n\n{table}"
