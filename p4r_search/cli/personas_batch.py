"""`p4r personas batch submit|status|collect`: persona generation through the OpenAI Batch API."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..catalog import load_catalog
from ..encoder import Encoder
from ..errors import IncompleteRunError
from ..personas.runner import Shard
from .llm_options import llm_options, llm_parts, llm_settings
from .options import embedding_model_option, input_file, json_option, make_reader, report_rejects, skip_invalid_option
from .personas import personas

output_option = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                             help="Personas JSONL; the batch files and state live in OUTPUT.batch/.")


@personas.group("batch")
def batch() -> None:
    """Generate personas with the OpenAI Batch API (cheaper, slower; for big catalogs).

    \b
    p4r personas batch submit  --items I --reviews R -o OUT --model M   # uploads, starts batches
    p4r personas batch status  -o OUT                                  # how they are doing
    p4r personas batch collect -o OUT                                  # appends finished personas
    Every step is resumable; rerun `submit` after `collect` to resend failed items.
    """


@batch.command("submit")
@click.option("--items", "items_path", type=input_file, required=True, help="Items JSONL.")
@click.option("--reviews", "reviews_path", type=input_file, required=True, help="Reviews JSONL.")
@output_option
@embedding_model_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shard", "shard_text", default=None, metavar="I/N", help="Only shard I of N of the items.")
@click.option("--max-requests", type=click.IntRange(1, 50_000), default=50_000, show_default=True,
              help="Requests per batch file (the API allows 50,000).")
@llm_options
@skip_invalid_option
@json_option
def submit(items_path, reviews_path, output, embedding_model, seed, shard_text, max_requests, skip_invalid, as_json,
           **options):
    """Write batch request files for items not done yet, upload them and start the batches."""
    from ..personas.llm import LLMGenerator
    from ..personas.llm.batch import BatchJob

    reader = make_reader(skip_invalid, None, output.with_name(output.name + ".rejects.jsonl"))
    catalog = load_catalog(items_path, reviews_path, reader)
    report_rejects(reader)
    settings = llm_settings(options, seed)
    ledger, _ = llm_parts(options)
    job = BatchJob(LLMGenerator(settings, Encoder(embedding_model), ledger=ledger), output)
    live = job.submit(catalog, shard=Shard.parse(shard_text) if shard_text else None, max_requests=max_requests)
    _show(live, as_json)


@batch.command("status")
@output_option
@click.option("--base-url", default=None, help="Endpoint [default: as submitted, or env OPENAI_BASE_URL].")
@json_option
def status(output, base_url, as_json):
    """Show the batches of OUTPUT and their progress."""
    from ..personas.llm.batch import BatchJob

    _show(BatchJob.resume(output, Encoder(None), base_url=base_url).refresh(), as_json)


@batch.command("collect")
@output_option
@embedding_model_option
@click.option("--base-url", default=None, help="Endpoint [default: as submitted, or env OPENAI_BASE_URL].")
@click.option("--failed", "failed_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Items whose answers were invalid or missing, appended [default: OUTPUT.failed.jsonl].")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Price table JSON [default: the packaged OpenAI list prices, with the batch discount].")
@json_option
def collect(output, embedding_model, base_url, failed_path, prices, as_json):
    """Validate the answers of finished batches and append their personas to OUTPUT."""
    from ..personas.llm import CostLedger, PriceTable
    from ..personas.llm.batch import BatchJob

    ledger = CostLedger(PriceTable.load(prices))
    job = BatchJob.resume(output, Encoder(embedding_model), ledger=ledger, base_url=base_url)
    failed_path = failed_path or output.with_name(output.name + ".failed.jsonl")
    totals = {**job.collect(failed_path), "cost": ledger.to_dict(), "output": str(output)}
    if as_json:
        click.echo(json.dumps(totals))
    else:
        click.echo(ledger.table(), err=True)
        click.echo(f"{totals['generated']} item(s) collected from {totals['collected_batches']} batch(es), "
                   f"{totals['failed']} failed, {totals['waiting_batches']} batch(es) still running")
    if totals["failed"]:
        raise IncompleteRunError(f"{totals['failed']} item(s) failed; see {failed_path}; "
                                 "run `p4r personas batch submit` again to resend them")


def _show(records, as_json: bool) -> None:
    rows = [r.model_dump(include={"name", "batch_id", "status", "request_counts", "collected"}) | {
        "items": len(r.item_ids)} for r in records]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        counts = row["request_counts"]
        done = f" {counts.get('completed', 0)}/{counts.get('total', 0)} done" if counts else ""
        click.echo(f"{row['name']}  {row['batch_id'] or '-'}  {row['status']}{done}  {row['items']} item(s)"
                   f"{'  collected' if row['collected'] else ''}")
    if not rows:
        click.echo("no batches")
