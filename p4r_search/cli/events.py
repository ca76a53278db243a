"""`p4r events`: events into the history store that `p4r serve` reads, and the store back out as the
interactions and reviews files the rest of the tool reads."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, ConflictError, InputError
from .app import cli
from .options import input_file, json_option, make_reader, report_rejects, skip_invalid_option

BATCH = 1000  # events per transaction


def history_db_options(f):
    f = click.option("--index", "index_path", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="The embedded index whose store it is (INDEX.history.db beside it).")(f)
    return click.option("--history-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="The history store (SQLite) [default: beside --index].")(f)


def store_path(history_db: Path | None, index_path: Path | None) -> Path:
    from ..events import default_history_db

    if history_db is None and index_path is None:
        raise ConfigError("give --history-db PATH, or --index INDEX for the store beside it")
    return history_db or default_history_db(index_path)


@cli.group()
def events() -> None:
    """The history store: live events in, interactions and reviews files out."""


@events.command("ingest")
@click.argument("events_file", metavar="FILE", type=input_file)
@history_db_options
@skip_invalid_option
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where rejected lines go [default: FILE.rejects.jsonl].")
@json_option
def ingest(events_file: Path, history_db: Path | None, index_path: Path | None, skip_invalid: bool,
           rejects: Path | None, as_json: bool) -> None:
    """Add FILE's events (JSONL, as POST /v1/events takes them) to the store, idempotent by event_id:
    ingesting a file again adds only what the store lacks."""
    from ..events import Event, HistoryStore

    store = HistoryStore(store_path(history_db, index_path))
    reader = make_reader(skip_invalid, rejects, events_file.with_suffix(".rejects.jsonl"))
    added = duplicates = 0
    pending: list[tuple[int, Event]] = []

    def flush() -> None:
        nonlocal added, duplicates
        try:
            result = store.add([event for _, event in pending])
        except ConflictError as exc:
            line_no, event = pending[exc.position]
            del pending[exc.position:]
            flush()
            raise InputError(str(events_file), line_no, f"event_id {event.event_id!r} is in the store with other "
                             "content", hint=_DONE_HINT) from None
        added, duplicates = added + result.added, duplicates + result.duplicates
        pending.clear()

    try:
        for line_no, event, _ in reader.read(events_file, Event):
            pending.append((line_no, event))
            if len(pending) >= BATCH:
                flush()
    except InputError as exc:
        flush()  # the lines before the bad one are in the store: nothing done is lost
        raise InputError(exc.path, exc.line, exc.reason, hint=_DONE_HINT) from None
    flush()
    report_rejects(reader)
    counts = store.counts()
    if as_json:
        click.echo(_json({"added": added, "duplicates": duplicates, "store": counts}))
    else:
        click.echo(f"{added} event(s) added, {duplicates} already in {store.path} (now {counts['users']} users, "
                   f"{counts['history']} interactions, {counts['reviews']} reviews)")


_DONE_HINT = "the lines before it are in the store; fix it and ingest the file again (what is in is skipped)"


@events.command("export")
@history_db_options
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for interactions.jsonl and reviews.jsonl (replaced whole).")
@json_option
def export(history_db: Path | None, index_path: Path | None, out_dir: Path, as_json: bool) -> None:
    """Write the store as interactions.jsonl and reviews.jsonl, for p4r eval loo, p4r train encoder and
    p4r serve --interactions/--reviews."""
    from ..events import HistoryStore
    from ..events.files import export_to_folder

    path = store_path(history_db, index_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no history store there")
    written = export_to_folder(HistoryStore(path), out_dir)
    if as_json:
        click.echo(_json({"out": str(out_dir), **written}))
    else:
        click.echo(f"wrote {written['interactions']} interactions and {written['reviews']} reviews to {out_dir}")


def _json(data: dict) -> str:
    import json

    return json.dumps(data)
