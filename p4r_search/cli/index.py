"""`p4r index …`: personas → vectors → index documents → backend."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..backends.embedded import EmbeddedBackend
from ..catalog import load_items
from ..documents import build_documents
from ..encoder import Encoder
from ..models import ItemPersonas
from .app import cli
from .options import (
    input_file,
    json_option,
    make_reader,
    model_option,
    progress_bar,
    progress_option,
    rejects_option,
    report_rejects,
    skip_invalid_option,
)

index_dir = click.option(
    "--index", "index_path", type=click.Path(file_okay=False, path_type=Path), required=True, help="Index directory."
)


@cli.group()
def index() -> None:
    """Build and maintain a persona index (embedded engine: a local directory)."""


@index.command("build")
@click.option("--personas", "personas_path", type=input_file, required=True, help="Personas JSONL.")
@index_dir
@click.option("--items", "items_path", type=input_file, default=None, help="Items JSONL: titles and filter fields.")
@model_option
@skip_invalid_option
@rejects_option
@progress_option
@json_option
def build(personas_path, index_path, items_path, model, skip_invalid, rejects, progress, as_json):
    """Embed personas and upsert them into the index (an item's old personas are replaced).

    All items are written in one atomic commit: an interrupted build leaves the index as it was.
    """
    reader = make_reader(skip_invalid, rejects, index_path.with_name(index_path.name + ".rejects.jsonl"))
    items = load_items(items_path, reader)[0] if items_path else None
    records = {r.item_id: r for _, r, _ in reader.read(personas_path, ItemPersonas)}
    report_rejects(reader)
    backend = EmbeddedBackend(index_path, writable=True)
    encoder = Encoder(model or backend.model_name)
    docs = build_documents(progress_bar(progress, "index")(list(records.values())), encoder, items)
    written = backend.upsert(docs)
    summary = {"items": written, "index": str(index_path), "rejected_lines": reader.rejects.count}
    click.echo(json.dumps(summary) if as_json else f"{written} item(s) indexed into {index_path}")


@index.command("repair")
@index_dir
def repair(index_path):
    """Rebuild the vector index from the vectors kept in the store."""
    rows = EmbeddedBackend(index_path, writable=True).repair()
    click.echo(f"rebuilt the vector index of {index_path}: {rows} persona vectors")


@index.command("info")
@index_dir
@json_option
def info(index_path, as_json):
    """Show what the index holds."""
    backend = EmbeddedBackend(index_path)
    meta = backend.meta
    cache = backend.vectors()
    data = {
        "index": str(index_path),
        "items": len(backend),
        "personas": 0 if cache is None else len(cache),
        "dim": meta.dim,
        "model": meta.model,
        "generation": meta.generation,
    }
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo("\n".join(f"{k}: {v}" for k, v in data.items()))


@index.command("delete")
@index_dir
@click.argument("item_ids", nargs=-1, required=True)
def delete(index_path, item_ids):
    """Delete items and their personas."""
    removed = EmbeddedBackend(index_path, writable=True).delete(list(item_ids))
    click.echo(f"{removed} of {len(item_ids)} item(s) deleted")
