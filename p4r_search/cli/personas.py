"""`p4r personas …`: reviews → personas JSONL."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from ..catalog import load_catalog
from ..encoder import Encoder
from ..personas import GENERATORS, make_generator
from ..personas.runner import generate_personas
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


@cli.group()
def personas() -> None:
    """Generate item personas from reviews (offline)."""


@personas.command("generate")
@click.option("--items", "items_path", type=input_file, required=True, help="Items JSONL.")
@click.option("--reviews", "reviews_path", type=input_file, required=True, help="Reviews JSONL.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Personas JSONL.")
@click.option("--generator", type=click.Choice(GENERATORS), default="extractive", show_default=True)
@model_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator.")
@skip_invalid_option
@rejects_option
@progress_option
@json_option
def generate(items_path, reviews_path, output, generator, model, seed, skip_invalid, rejects, progress, as_json):
    """Write 1 to 7 personas per item to OUTPUT.

    Resumable: items already in OUTPUT with the same input hash are skipped,
    so an interrupted run picks up where it stopped.
    """
    reader = make_reader(skip_invalid, rejects, output.with_name(output.name + ".rejects.jsonl"))
    catalog = load_catalog(items_path, reviews_path, reader)
    report_rejects(reader)
    gen = make_generator(generator, Encoder(model), seed=seed)
    report = generate_personas(catalog, gen, output, progress=progress_bar(progress, "personas"))
    summary = {**asdict(report), "items": len(catalog.items), "rejected_lines": reader.rejects.count, "output": str(output)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{report.generated} item(s) generated ({report.personas} personas), "
            f"{report.skipped} already done, written to {output}"
        )
