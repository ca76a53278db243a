"""`p4r personas …`: reviews → personas JSONL."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import click
from click.core import ParameterSource

from ..catalog import load_catalog
from ..encoder import Encoder
from ..errors import ConfigError, IncompleteRunError
from ..personas import GENERATORS, make_generator
from ..personas.llm.ledger import check_budget
from ..personas.runner import Shard, generate_personas
from .app import cli
from .llm_options import llm_options, llm_parts, llm_settings
from .options import (
    FiniteFloatRange,
    embedding_model_option,
    input_file,
    json_option,
    make_reader,
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
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the first N items of --items (file order), to try a slice; a later run without it "
                   "resumes, keeping these.")
@click.option("--ignore-unknown-items", is_flag=True,
              help="Skip reviews of items that are not in --items (a subset of the items with the full reviews).")
@click.option("--generator", type=click.Choice(GENERATORS), default="extractive", show_default=True,
              help="extractive: clustering, no LLM; llm: any OpenAI-compatible endpoint (see the LLM options).")
@embedding_model_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator (and the LLM's sampling).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Items generated at once (threads); for the llm generator, requests in flight.")
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Only the items of shard I of N (1-based, by a stable hash of the item id).")
@click.option("--failed", "failed_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Items that failed after retries, JSONL [default: OUTPUT.failed.jsonl].")
@click.option("--max-cost", type=FiniteFloatRange(min=0), default=None, metavar="USD",
              help="llm: start no new item once this much is spent (items in flight still finish).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run report JSON: counts, cost ledger, settings [default: OUTPUT.report.json].")
@llm_options
@skip_invalid_option
@rejects_option
@progress_option
@json_option
def generate(**options):
    """Write 1 to 7 personas per item to OUTPUT.

    Resumable: items already in OUTPUT with the same input hash are skipped, so
    an interrupted run picks up where it stopped, and a rerun costs nothing.
    Items that fail after retries go to OUTPUT.failed.jsonl and the run goes on
    (exit code 75: rerun to retry them).
    """
    output: Path = options["output"]
    reader = make_reader(options["skip_invalid"], options["rejects"], output.with_name(output.name + ".rejects.jsonl"))
    catalog = load_catalog(options["items_path"], options["reviews_path"], reader, limit=options["limit"],
                           ignore_unknown_items=options["ignore_unknown_items"])
    report_rejects(reader)
    _note_ignored_reviews(catalog, options)
    encoder = Encoder(options["embedding_model"])
    gen, ledger = _generator(options, encoder)
    max_cost = options["max_cost"]
    shard = Shard.parse(options["shard_text"]) if options["shard_text"] else None
    started = time.monotonic()
    report = generate_personas(
        catalog, gen, output, progress=progress_bar(options["progress"], "personas"),
        concurrency=options["concurrency"], shard=shard, failed_path=options["failed_path"],
        should_stop=_cost_cap(ledger, max_cost))
    failed_path = options["failed_path"] or output.with_name(output.name + ".failed.jsonl")
    summary = {**asdict(report), "items": len(catalog.items), "rejected_lines": reader.rejects.count,
               "output": str(output), "seconds": round(time.monotonic() - started, 3), "generator": gen.info.model_dump()}
    if report.failed:
        summary["failed_items"] = str(failed_path)
    if options["limit"] is not None:
        summary["slice"] = {"limit": options["limit"], "items_in_file": len(catalog.items) + catalog.items_past_limit}
    if ledger is not None:
        summary["cost"] = ledger.to_dict()
    report_path = options["report_path"] or output.with_name(output.name + ".report.json")
    report_path.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    _print_summary(summary, report, ledger, as_json=options["as_json"])
    if report.failed or report.stopped:
        reason = report.stopped or f"{report.failed} item(s) failed; see {failed_path}"
        raise IncompleteRunError(f"{reason}; rerun the same command to finish (done items are kept)")


def _note_ignored_reviews(catalog, options: dict) -> None:
    if catalog.unknown_item_reviews:
        click.echo(f"note: {catalog.unknown_item_reviews} review(s) of items not in {options['items_path']} "
                   "ignored (--ignore-unknown-items)", err=True)


def _slice_text(summary: dict) -> str:
    if "slice" not in summary:
        return ""
    return (f" (a slice: the first {summary['items']} of {summary['slice']['items_in_file']} items, "
            f"--limit {summary['slice']['limit']})")


def _generator(options: dict, encoder: Encoder):
    if options["generator"] != "llm":
        given = [f"--{n.replace('_', '-')}" for n in ("model", "max_cost")
                 if click.get_current_context().get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to --generator llm "
                              "(the sentence-transformers model is --embedding-model)")
        return make_generator(options["generator"], encoder, seed=options["seed"]), None
    settings = llm_settings(options, options["seed"])
    ledger, cache = llm_parts(options)
    check_budget(ledger, settings.model, options["max_cost"])
    return make_generator("llm", encoder, llm=settings, ledger=ledger, cache=cache), ledger


def _cost_cap(ledger, max_cost: float | None):
    if ledger is None or max_cost is None:
        return lambda: None
    return lambda: f"the cost cap of ${max_cost:g} was reached" if (ledger.total_cost or 0) >= max_cost else None


def _print_summary(summary: dict, report, ledger, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    if ledger is not None:
        click.echo(ledger.table(), err=True)
        cost = summary["cost"]["cost_usd"]
        click.echo(f"total cost: {'unpriced' if cost is None else f'${cost:.4f}'}", err=True)
    click.echo(f"{report.generated} item(s) generated ({report.personas} personas), {report.skipped} already done, "
               f"{report.failed} failed, written to {summary['output']}{_slice_text(summary)}")
