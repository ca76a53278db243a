"""`p4r index …`: personas → vectors → index documents → backend."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..backends.cluster import BulkFailedError
from ..backends.embedded import EmbeddedBackend
from ..catalog import load_items
from ..documents import build_documents
from ..encoder import Encoder
from ..errors import ConfigError
from ..models import ItemPersonas, Review
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from .app import cli
from .engines import engine_options, open_backend
from .options import (
    counting_bar,
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


def read_records(personas_path, reader):
    return list({r.item_id: r for _, r, _ in reader.read(personas_path, ItemPersonas)}.values())


persona_vector_options = [
    click.option("--persona-vector", type=click.Choice(["auto", *PERSONA_VECTOR_KINDS]), default="auto",
                 show_default=True,
                 help="What a persona vector embeds: its text, the centroid of its evidence reviews (needs "
                      "--reviews), or both (blend); auto: evidence with --reviews, else text. "
                      "`p4r eval loo` says which ranks best on your data."),
    click.option("--reviews", "reviews_path", type=input_file, default=None,
                 help="Reviews JSONL: the evidence texts for --persona-vector evidence or blend."),
    click.option("--evidence-prior", type=click.FloatRange(min=0), default=DEFAULT_EVIDENCE_PRIOR, show_default=True,
                 help="Evidence and blend vectors: pseudo-reviews at the item's centroid added to each persona's "
                      "evidence, pulling small personas toward their item."),
]


def with_persona_vector_options(f):
    for option in reversed(persona_vector_options):
        f = option(f)
    return f


def resolve_kind(persona_vector: str, reviews_path) -> str:
    if persona_vector != "auto":
        return persona_vector
    if reviews_path is None:
        click.echo("note: text persona vectors; give --reviews for evidence vectors, which rank better "
                   "in `p4r eval loo` (docs/evaluation.md)", err=True)
        return "text"
    return "evidence"


def read_review_texts(persona_vector, reviews_path, reader) -> dict[str, str] | None:
    if persona_vector == "text":
        return None
    if reviews_path is None:
        raise ConfigError(f"--persona-vector {persona_vector} needs --reviews (the texts the personas cite)")
    return {review.review_id: review.text for _, review, _ in reader.read(reviews_path, Review)}


def counted(docs, tally: dict):
    """Passes documents through, adding up the personas embedded by their text for want of evidence."""
    for doc in docs:
        tally["text_fallbacks"] = tally.get("text_fallbacks", 0) + doc.text_fallbacks
        yield doc


def warn_fallbacks(tally: dict) -> None:
    if tally.get("text_fallbacks"):
        click.echo(f"warning: {tally['text_fallbacks']} persona(s) cite no review found in --reviews; "
                   "their text vectors were used", err=True)


def write_to_cluster(backend, docs, *, partial, failed_docs, chunk_size, progress, total, as_json, dry_run):
    failed_docs.unlink(missing_ok=True)  # the file lists this run's failures only
    with counting_bar(progress, total, "bulk") as bar:
        report = backend.write(docs, partial=partial, failed_path=failed_docs, chunk=chunk_size, on_chunk=bar.update)
    backend.refresh()
    if dry_run:
        return  # the request lines are the whole output
    summary = {"written": report.written, "failed": report.failed, "retried": report.retried, "index": backend.index}
    if report.failed:
        summary["failed_docs"] = str(failed_docs)
    click.echo(json.dumps(summary) if as_json else
               f"{report.written} item(s) written to {backend.index}, {report.failed} failed, {report.retried} retried")
    if report.failed:
        raise BulkFailedError(f"{report.failed} document(s) were not written; see {failed_docs}")


@index.command("build")
@click.option("--personas", "personas_path", type=input_file, required=True, help="Personas JSONL.")
@engine_options
@click.option("--items", "items_path", type=input_file, default=None, help="Items JSONL: titles and filter fields.")
@model_option
@with_persona_vector_options
@skip_invalid_option
@rejects_option
@click.option("--failed-docs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Cluster: where documents that failed go [default: INDEX.failed.jsonl].")
@click.option("--chunk-size", type=int, default=500, show_default=True, help="Cluster: documents per bulk request.")
@progress_option
@json_option
def build(personas_path, engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version,
          assume_license, items_path, model, persona_vector, reviews_path, evidence_prior, skip_invalid, rejects,
          failed_docs, chunk_size, progress, as_json):
    """Embed personas and write them, one document per item, replacing what an item had.

    Embedded: one atomic commit; an interrupted build leaves the index as it was.
    Cluster: bulk `index` actions with stable ids (the item id), so a rerun converges.
    """
    reader = make_reader(skip_invalid, rejects, Path(f"{index_name}.rejects.jsonl"))
    items = load_items(items_path, reader)[0] if items_path else None
    if items_path is None:
        click.echo("warning: no --items: titles will be the item ids, and items will have no categories or "
                   "attributes, so --filter categories=… or attributes.…=… will match nothing", err=True)
    records = read_records(personas_path, reader)
    persona_vector = resolve_kind(persona_vector, reviews_path)
    review_texts = read_review_texts(persona_vector, reviews_path, reader)
    report_rejects(reader)
    backend = open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version,
                           assume_license, writable=True)
    tally: dict = {}
    vectors = {"persona_vector": persona_vector, "review_texts": review_texts, "evidence_prior": evidence_prior}
    if engine != "embedded":
        encoder = Encoder(model)
        if not dry_run and backend.prepare_build(encoder.dim):  # a dry run cannot know what exists
            click.echo(f"note: index {index_name} did not exist; created it with the p4r mapping "
                       f"({encoder.dim}-d persona vectors)", err=True)
        docs = counted(build_documents(records, encoder, items, **vectors), tally)
        failed = failed_docs or Path(f"{index_name}.failed.jsonl")
        write_to_cluster(backend, docs, partial=False, failed_docs=failed, chunk_size=chunk_size,
                         progress=progress and not dry_run, total=len(records), as_json=as_json, dry_run=dry_run)
        return warn_fallbacks(tally)
    encoder = Encoder(model or backend.model_name)
    docs = counted(build_documents(progress_bar(progress, "index")(records), encoder, items, **vectors), tally)
    written = backend.upsert(docs)
    warn_fallbacks(tally)
    summary = {"items": written, "index": index_name, "rejected_lines": reader.rejects.count,
               "persona_vector": persona_vector, "text_fallbacks": tally.get("text_fallbacks", 0)}
    click.echo(json.dumps(summary) if as_json else
               f"{written} item(s) indexed into {index_name} ({persona_vector} persona vectors)")


@index.command("create")
@engine_options
@model_option
def create(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license, model):
    """Create a new index with the personas mapping (dims taken from the encoder)."""
    backend = open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version,
                           assume_license, writable=True)
    if engine == "embedded":
        click.echo(f"created {index_name}")
        return
    backend.create_index(Encoder(model).dim)
    if not dry_run:
        click.echo(f"created index {index_name} on {backend.cluster}")


@index.command("attach")
@click.option("--personas", "personas_path", type=input_file, required=True, help="Personas JSONL.")
@engine_options
@model_option
@with_persona_vector_options
@skip_invalid_option
@rejects_option
@click.option("--failed-docs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where documents that failed go [default: INDEX.failed.jsonl].")
@click.option("--chunk-size", type=int, default=500, show_default=True)
@progress_option
@json_option
def attach(personas_path, engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version,
           assume_license, model, persona_vector, reviews_path, evidence_prior, skip_invalid, rejects, failed_docs,
           chunk_size, progress, as_json):
    """Add personas to an EXISTING cluster index: put_mapping, then bulk partial updates.

    No other field of your documents changes. A conflicting `personas` mapping (another
    type, other dims) is refused before anything is written. Document ids are item ids.
    """
    if engine == "embedded":
        raise ConfigError("attach is for --engine es or opensearch; use `index build` for the embedded engine")
    reader = make_reader(skip_invalid, rejects, Path(f"{index_name}.rejects.jsonl"))
    records = read_records(personas_path, reader)
    persona_vector = resolve_kind(persona_vector, reviews_path)
    review_texts = read_review_texts(persona_vector, reviews_path, reader)
    report_rejects(reader)
    backend = open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
    encoder = Encoder(model)
    backend.attach(encoder.dim, backend.mapping())
    failed = failed_docs or Path(f"{index_name}.failed.jsonl")
    tally: dict = {}
    docs = counted(build_documents(records, encoder, persona_vector=persona_vector, review_texts=review_texts,
                                   evidence_prior=evidence_prior), tally)
    write_to_cluster(backend, docs, partial=True, failed_docs=failed, chunk_size=chunk_size,
                     progress=progress and not dry_run, total=len(records), as_json=as_json, dry_run=dry_run)
    warn_fallbacks(tally)


@index.command("repair")
@index_dir
def repair(index_path):
    """Rebuild the vector index from the vectors kept in the store."""
    rows = EmbeddedBackend(index_path, writable=True, create=False).repair()
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
        "persona_vector": meta.persona_vector or ("text" if meta.dim is not None else None),
        "evidence_prior": meta.evidence_prior,
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
    removed = EmbeddedBackend(index_path, writable=True, create=False).delete(list(item_ids))
    click.echo(f"{removed} of {len(item_ids)} item(s) deleted")
