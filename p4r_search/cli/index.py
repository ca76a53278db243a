"""`p4r index …`: personas → vectors → index documents → backend."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..backends.cluster import BulkFailedError
from ..backends.embedded import EmbeddedBackend
from ..catalog import load_items
from ..documents import build_documents, documents_from_stored
from ..encoder import Encoder
from ..errors import ConfigError, InputError, P4RError
from ..models import ItemPersonas, Review
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from .app import cli
from .engines import engine_options, open_backend
from .options import (
    FiniteFloatRange,
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

personas_option = click.option(
    "--personas", "personas_path", type=click.Path(exists=True, path_type=Path), required=True,
    help="Personas JSONL, or the -o folder of `p4r pipeline run`: its shards' vectors are indexed as they are "
         "when they are what --model and --persona-vector ask for, else the personas are encoded again.")
index_dir = click.option(
    "--index", "index_path", type=click.Path(file_okay=False, path_type=Path), required=True, help="Index directory."
)


@cli.group()
def index() -> None:
    """Build and maintain a persona index (embedded engine: a local directory)."""


def read_records(personas_path, reader) -> list:
    """The latest line of each item, from a personas file or a pipeline folder's shards (`ShardLine`s)."""
    if Path(personas_path).is_dir():
        return list(read_shard_folder(personas_path, reader).values())
    return list({r.item_id: r for _, r, _ in reader.read(personas_path, ItemPersonas)}.values())


def read_shard_folder(folder: Path, reader) -> dict:
    """`p4r pipeline run -o FOLDER`: its personas-*.jsonl / .parquet shards, later shards winning; the run's
    other files (report.json, failed.jsonl, rejects.jsonl) are not read."""
    try:
        import pyarrow  # noqa: F401  (lists the folder, reads Parquet shards)
    except ImportError:
        raise ConfigError(f"reading the pipeline folder {folder} needs pyarrow: pip install pyarrow") from None
    from ..distributed.files import Location
    from ..distributed.shards import read_shards, shard_names

    where = Location.parse(str(folder))
    if not shard_names(where):
        raise InputError(str(folder), None, "no personas-*.jsonl or personas-*.parquet shards in this folder",
                         hint="--personas takes a personas JSONL file or the -o folder of `p4r pipeline run`")
    return read_shards(where, reader)


persona_vector_options = [
    click.option("--persona-vector", type=click.Choice(["auto", *PERSONA_VECTOR_KINDS]), default="auto",
                 show_default=True,
                 help="What a persona vector embeds: its text, the centroid of its evidence reviews (needs "
                      "--reviews), or both (blend); auto: the kind stored in a pipeline folder, else evidence "
                      "with --reviews, else text. "
                      "`p4r eval loo` says which ranks best on your data."),
    click.option("--reviews", "reviews_path", type=input_file, default=None,
                 help="Reviews JSONL: the evidence texts for --persona-vector evidence or blend (not needed when "
                      "a pipeline folder's stored vectors are used)."),
    click.option("--evidence-prior", type=FiniteFloatRange(min=0), default=DEFAULT_EVIDENCE_PRIOR, show_default=True,
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


def index_model(engine: str, model: str | None, index_name: str) -> str:
    """The model the index will record: --model, else (embedded) the one an existing index holds, else the default."""
    if model is None and engine == "embedded":
        try:
            model = EmbeddedBackend(Path(index_name)).model_name
        except P4RError:  # no index there yet (or a broken one, which opening it for writing reports)
            pass
    return Encoder(model).model_name


def described(kind: str, model: str, evidence_prior: float) -> str:
    return f"{kind}/{model.removeprefix('packaged:')}" + ("" if kind == "text" else f" (evidence prior {evidence_prior:g})")


def choose_vectors(records, model_name: str, persona_vector: str, reviews_path, evidence_prior: float) -> tuple[str, bool]:
    """The persona vector kind to index, and whether the vectors stored with the records (a pipeline folder's)
    are that kind, made by `model_name` with this prior, so that nothing needs encoding. auto takes the stored
    kind, unless that is text and --reviews is given (auto: evidence with --reviews)."""
    stored = [getattr(record, "vectors", None) for record in records]
    if not any(stored):  # a personas file
        return resolve_kind(persona_vector, reviews_path), False
    first = next(s for s in stored if s is not None)
    if persona_vector == "auto" and not (first.kind == "text" and reviews_path is not None):
        kind = first.kind
    else:
        kind = resolve_kind(persona_vector, reviews_path)
    missing = sum(s is None for s in stored)
    odd = next((s for s in stored if s is not None and not s.matches(model_name, kind, evidence_prior)), None)
    if not missing and odd is None:
        click.echo(f"note: indexing the stored {described(kind, model_name, evidence_prior)} vectors; "
                   "encoding nothing", err=True)
        return kind, True
    why = (f"{missing} of {len(stored)} item(s) have no stored vectors" if missing else
           f"stored vectors are {described(odd.kind, odd.model, odd.evidence_prior)}")
    kind = resolve_kind(persona_vector, reviews_path)
    click.echo(f"note: {why}; asked for {described(kind, model_name, evidence_prior)}: encoding again", err=True)
    return kind, False


def make_documents(records, encoder: Encoder, items, reuse: bool, **vectors):
    """Index documents: from the records' stored vectors (`reuse`, encoding nothing), else by encoding."""
    if reuse:
        return documents_from_stored(records, encoder.model_name, items)
    return build_documents(records, encoder, items, **vectors)


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
@personas_option
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
    encoder = Encoder(index_model(engine, model, index_name))  # loads the model only if something is encoded
    persona_vector, reuse = choose_vectors(records, encoder.model_name, persona_vector, reviews_path, evidence_prior)
    review_texts = None if reuse else read_review_texts(persona_vector, reviews_path, reader)
    report_rejects(reader)
    backend = open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version,
                           assume_license, writable=True)
    tally: dict = {}
    vectors = {"persona_vector": persona_vector, "review_texts": review_texts, "evidence_prior": evidence_prior}
    if engine != "embedded":
        dim = records[0].vectors.dim if reuse else encoder.dim
        if not dry_run and backend.prepare_build(dim):  # a dry run cannot know what exists
            click.echo(f"note: index {index_name} did not exist; created it with the p4r mapping "
                       f"({dim}-d persona vectors)", err=True)
        docs = counted(make_documents(records, encoder, items, reuse, **vectors), tally)
        failed = failed_docs or Path(f"{index_name}.failed.jsonl")
        write_to_cluster(backend, docs, partial=False, failed_docs=failed, chunk_size=chunk_size,
                         progress=progress and not dry_run, total=len(records), as_json=as_json, dry_run=dry_run)
        return warn_fallbacks(tally)
    docs = counted(make_documents(progress_bar(progress, "index")(records), encoder, items, reuse, **vectors), tally)
    written = backend.upsert(docs)
    warn_fallbacks(tally)
    summary = {"items": written, "index": index_name, "rejected_lines": reader.rejects.count,
               "persona_vector": persona_vector, "text_fallbacks": tally.get("text_fallbacks", 0),
               "stored_vectors": reuse}
    click.echo(json.dumps(summary) if as_json else
               f"{written} item(s) indexed into {index_name} ({persona_vector} persona vectors"
               f"{', as stored' if reuse else ''})")


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
@personas_option
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
    encoder = Encoder(model)
    persona_vector, reuse = choose_vectors(records, encoder.model_name, persona_vector, reviews_path, evidence_prior)
    review_texts = None if reuse else read_review_texts(persona_vector, reviews_path, reader)
    report_rejects(reader)
    backend = open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
    backend.attach(records[0].vectors.dim if reuse else encoder.dim, backend.mapping())
    failed = failed_docs or Path(f"{index_name}.failed.jsonl")
    tally: dict = {}
    docs = counted(make_documents(records, encoder, None, reuse, persona_vector=persona_vector,
                                  review_texts=review_texts, evidence_prior=evidence_prior), tally)
    write_to_cluster(backend, docs, partial=True, failed_docs=failed, chunk_size=chunk_size,
                     progress=progress and not dry_run, total=len(records), as_json=as_json, dry_run=dry_run)
    warn_fallbacks(tally)


@index.command("repair")
@index_dir
def repair(index_path):
    """Rebuild the vector index of the store's generation from the last saved vectors and the pending writes,
    each checked in full: after a write was killed, or when its graph (hnsw.usearch) is damaged."""
    rows = EmbeddedBackend(index_path, writable=True, create=False).repair()
    click.echo(f"rebuilt the vector index of {index_path}: {rows} persona vectors")


@index.command("info")
@index_dir
@click.option("--check", is_flag=True,
              help="Check every file against the checksums written with it, however large (a read-only open "
                   "hashes only indexes of up to 64 MiB; always checked: sizes, and files read whole).")
@json_option
def info(index_path, check, as_json):
    """Show what the index holds; a damaged file is named, with what to run (exit 74)."""
    backend = EmbeddedBackend(index_path, check=check)
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
