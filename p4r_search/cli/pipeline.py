"""`p4r pipeline run`: the offline pipeline on Ray Data (p4r_search/distributed), locally or on a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from ..errors import ConfigError, IncompleteRunError
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from ..personas import GENERATORS
from .app import cli
from .llm_options import llm_options, llm_parts, llm_settings
from .options import (
    FiniteFloatRange,
    embedding_model_option,
    json_option,
    progress_option,
    rejects_option,
    skip_invalid_option,
)


@cli.group()
def pipeline() -> None:
    """The offline pipeline on Ray Data, for catalogs beyond one machine (extra: p4r-search[ray])."""


def cluster_options(f):
    options = [
        click.option("--engine", type=click.Choice(["es", "opensearch"]), default=None,
                     help="Also bulk-write the documents to this cluster, from the workers."),
        click.option("--url", envvar="P4R_URL", default=None, help="Cluster URL [env P4R_URL]. Auth from P4R_API_KEY "
                     "or P4R_USERNAME/P4R_PASSWORD, on every Ray node."),
        click.option("--index", "index_name", default=None, help="Cluster index (created with the p4r mapping if missing)."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), default=None, help="CA bundle for TLS."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (not recommended)."),
        click.option("--os-engine", type=click.Choice(["lucene", "faiss"]), default="lucene", show_default=True),
        click.option("--chunk-size", type=click.IntRange(min=1), default=500, show_default=True,
                     help="Documents per bulk request."),
        click.option("--failed-docs", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Documents the cluster refused [default: INDEX.failed.jsonl]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@pipeline.command("run")
@click.option("--items", "items", multiple=True, required=True, metavar="PATH",
              help="Items: a JSONL or Parquet file, a folder of them, a glob (part-*.parquet), or a URI pyarrow reads "
                   "(s3://…). Repeatable.")
@click.option("--reviews", "reviews", multiple=True, required=True, metavar="PATH", help="Reviews, as --items.")
@click.option("-o", "--output", required=True, metavar="FOLDER",
              help="Shards of personas with their vectors (`p4r index build --personas FOLDER` reads them), the "
                   "report, failed items and rejects. Local, or shared storage on a cluster.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--generator", type=click.Choice(GENERATORS), default="extractive", show_default=True)
@embedding_model_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--persona-vector", type=click.Choice(PERSONA_VECTOR_KINDS), default="evidence", show_default=True,
              help="What a persona vector embeds (as in `p4r index build`).")
@click.option("--evidence-prior", type=FiniteFloatRange(min=0), default=DEFAULT_EVIDENCE_PRIOR, show_default=True)
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, metavar="ADDR",
              help="A Ray cluster (ray://host:10001, or auto) [env RAY_ADDRESS; default: a local Ray for this run].")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None, help="Local Ray only: logical CPUs.")
@click.option("--encode-actors", type=click.IntRange(min=1), default=1, show_default=True,
              help="Actors that embed (each loads the model once); the extractive generator runs in them too.")
@click.option("--cpus-per-actor", type=FiniteFloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs (and torch threads) of each encode actor.")
@click.option("--num-gpus-per-actor", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="GPUs for each encode actor (e.g. 1, or 0.5 to share one).")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="llm: generation actors.")
@click.option("--requests-per-actor", type=click.IntRange(min=1), default=4, show_default=True,
              help="llm: items in flight in each generation actor.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Items per worker batch; each finished batch is one shard, kept if the job dies.")
@click.option("--max-cost", type=FiniteFloatRange(min=0), default=None, metavar="USD",
              help="llm: start no new item once the whole cluster has spent this much.")
@click.option("--ignore-unknown-items", is_flag=True, help="Skip reviews of items that are not in --items.")
@cluster_options
@llm_options
@skip_invalid_option
@rejects_option
@progress_option
@json_option
def run(**options):
    """Generate and embed personas for every item that is not done yet.

    Resumable: items already in OUTPUT with the same input hash are skipped, so a
    job that died picks up where it stopped. Items that fail after retries go to
    OUTPUT/failed.jsonl (exit 75: rerun to retry them). Runs unchanged on a local
    Ray and on a cluster (--ray-address).
    """
    from ..distributed import require_ray

    require_ray()
    from ..distributed.pipeline import report_dict
    from ..distributed.pipeline import run as run_pipeline

    config = _config(options)
    report = run_pipeline(config, progress=options["progress"] and not options["as_json"])
    summary = report_dict(report) | {"output": config.output}
    _write_report(config.output, summary)
    _print(report, summary, options["as_json"])
    _raise_if_incomplete(report, config)


def _config(options: dict):
    from ..distributed.specs import GeneratorSpec, PipelineConfig, Resources, VectorSpec

    generator = _generator_spec(options, GeneratorSpec)
    resources = Resources(ray_address=options["ray_address"], num_cpus=options["num_cpus"],
                          encode_actors=options["encode_actors"], cpus_per_actor=options["cpus_per_actor"],
                          num_gpus_per_actor=options["num_gpus_per_actor"],
                          concurrency=options["concurrency"], requests_per_actor=options["requests_per_actor"],
                          batch_size=options["batch_size"])
    cluster = _cluster_spec(options, generator)
    return PipelineConfig(
        items=options["items"], reviews=options["reviews"], output=options["output"], fmt=options["fmt"],
        generator=generator, vectors=VectorSpec(options["persona_vector"], options["evidence_prior"]),
        resources=resources, cluster=cluster, skip_invalid=options["skip_invalid"],
        rejects=str(options["rejects"]) if options["rejects"] else None,
        ignore_unknown_items=options["ignore_unknown_items"], max_cost=options["max_cost"],
        failed_docs=options["failed_docs"] or (Path(f"{options['index_name']}.failed.jsonl") if cluster else None))


def _generator_spec(options: dict, spec_class):
    if options["generator"] != "llm":
        for name in ("model", "max_cost"):
            if click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE:
                raise ConfigError(f"--{name.replace('_', '-')} only applies to --generator llm "
                                  "(the sentence-transformers model is --embedding-model)")
        return spec_class("extractive", options["seed"], options["embedding_model"])
    from ..personas.llm.ledger import check_budget

    settings = llm_settings(options, options["seed"])
    ledger, cache = llm_parts(options)
    check_budget(ledger, settings.model, options["max_cost"])
    cache_dir = str(cache.directory) if cache.directory is not None else None
    return spec_class("llm", options["seed"], options["embedding_model"], settings, cache_dir, ledger.prices)


def _cluster_spec(options: dict, generator):
    if options["engine"] is None:
        if options["index_name"]:
            raise ConfigError("--index is the cluster index: give --engine es or opensearch with it")
        return None
    if not options["index_name"]:
        raise ConfigError(f"--engine {options['engine']} needs --index (the cluster index to write)")
    from ..backends.connect import ConnectionSettings
    from ..clusters.model import parse_engine
    from ..distributed.specs import ClusterSpec
    from ..encoder import Encoder
    from .engines import open_cluster

    backend = open_cluster(options["engine"], options["index_name"], options["url"], options["ca_certs"],
                           options["insecure"], options["os_engine"], False, None, None)
    if backend.prepare_build(Encoder(generator.embedding_model).dim):
        click.echo(f"note: index {options['index_name']} did not exist; created it with the p4r mapping", err=True)
    settings = ConnectionSettings(parse_engine(options["engine"]), options["url"], ca_certs=options["ca_certs"],
                                  verify_certs=not options["insecure"])
    return ClusterSpec(settings, backend.cluster, options["index_name"], options["os_engine"], options["chunk_size"])


def _write_report(output: str, summary: dict) -> None:
    from ..distributed.files import Location, write_atomically

    write_atomically(Location.parse(output).child("report.json"), (json.dumps(summary, indent=2) + "\n").encode())


def _print(report, summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    if report.cost_table:
        click.echo(report.cost_table, err=True)
        cost = report.cost["cost_usd"]
        click.echo(f"total cost: {'unpriced' if cost is None else f'${cost:.4f}'}", err=True)
    click.echo(f"{report.generated} item(s) generated ({report.personas} personas), {report.skipped} already done, "
               f"{report.failed} failed, {report.stopped} not started, in {report.shards} shard(s) in "
               f"{summary['output']} by {len({w.split(' ', 1)[1] for w in report.workers})} worker(s), "
               f"{report.seconds:.1f} s")


def _raise_if_incomplete(report, config) -> None:
    from ..backends.cluster import BulkFailedError

    if report.bulk_failed:
        raise BulkFailedError(f"{report.bulk_failed} document(s) were not written; see {config.failed_docs}; "
                              "rerun the same command to retry them")
    if report.failed or report.stopped:
        reason = (f"the cost cap of ${config.max_cost:g} was reached ({report.stopped} item(s) not started)"
                  if report.stopped else f"{report.failed} item(s) failed; see {config.output}/failed.jsonl")
        raise IncompleteRunError(f"{reason}; rerun the same command to finish (done items are kept)")
