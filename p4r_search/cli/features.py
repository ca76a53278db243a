"""`p4r features`: a team's candidates → one row of p4r's features per (user, candidate), as JSONL and/or
SVMlight/RankLib, for the team's own learning-to-rank (docs/ltr.md)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from ..errors import ConfigError, NotFoundError
from ..io import LineReader
from ..models import Review
from .app import cli
from .engines import engine_options
from .options import input_file, json_option
from .recommend import make_recommender, profile_options

output_file = click.Path(dir_okay=False, writable=True, path_type=Path)


@contextmanager
def histories(index_name: str, engine: str, history_db: Path | None, interactions: Path | None,
              reviews: Path | None) -> Iterator[object | None]:
    """Where users are read from: --history-db, a temporary store seeded from --interactions/--reviews, the
    store beside an embedded index when it exists, or none (then every line must give a history or text)."""
    from ..events import HistoryStore, default_history_db

    if history_db is not None and (interactions or reviews):
        raise ConfigError("give --history-db or --interactions/--reviews, not both")
    if history_db is not None:
        if not history_db.is_file():
            raise NotFoundError(f"no history store at {history_db}")
        store = HistoryStore(history_db)
        try:
            yield store
        finally:
            store.close()
        return
    if interactions or reviews:
        from ..events.files import seed_from_files

        with tempfile.TemporaryDirectory(prefix="p4r-features-") as folder:
            store = HistoryStore(Path(folder) / "history.db")
            try:
                seed_from_files(store, interactions, reviews)
                yield store
            finally:
                store.close()
        return
    beside = default_history_db(index_name) if engine == "embedded" else None
    if beside is not None and beside.is_file():
        store = HistoryStore(beside)
        try:
            yield store
        finally:
            store.close()
        return
    yield None


def read_ratings(path: Path | None) -> dict[str, float] | None:
    """Review id → rating, from a reviews JSONL (a bad line is exit 65 with file and line)."""
    if path is None:
        return None
    return {r.review_id: r.rating for _, r, _ in LineReader().read(path, Review) if r.rating is not None}


def user_of(line, store, where: str):
    """The line's user as a `UserInput`; a user the store lacks is a NotFoundError naming the line."""
    from ..recommend import UserInput

    if line.user_id is None:
        return UserInput(history=tuple(line.history or ()), text=line.text, reviews=dict(line.reviews))
    if store is None:
        raise ConfigError(f"{where}: user_id {line.user_id!r} needs --history-db or --interactions (or give "
                          "the line a history instead)")
    try:
        history, reviews = store.profile_of(line.user_id)
    except NotFoundError as exc:
        raise NotFoundError(f"{where}: {exc}") from None
    return UserInput(history=history, text=line.text, reviews=reviews)


@cli.command()
@engine_options
@click.option("--candidates", "candidates_path", type=input_file, required=True,
              help='JSONL, one user a line: {"user_id": …, "candidates": [{"item_id": …, "score": …, "label": …}]} '
                   '(or "history"/"text" instead of user_id; score and label optional).')
@click.option("--history-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A history store (p4r serve's) to read users from [default: the one beside an embedded --index, "
                   "if any].")
@click.option("--interactions", "interactions_path", type=input_file, default=None,
              help="Interactions JSONL to read users from (instead of --history-db).")
@click.option("--reviews", "reviews_path", type=input_file, default=None,
              help="Reviews JSONL: the users' own reviews (with --interactions).")
@click.option("--ratings", "ratings_path", type=input_file, default=None,
              help="Reviews JSONL whose ratings give best_rating: the mean rating of the matched persona's evidence "
                   "reviews (the index stores no rating; without this, best_rating and has_rating are 0).")
@profile_options
@click.option("--jsonl", "jsonl_out", type=output_file, default=None, help="Write the rows as JSONL here.")
@click.option("--svmlight", "svmlight_out", type=output_file, default=None,
              help="Write the rows in SVMlight/RankLib format here (LightGBM, XGBoost, OpenSearch LTR).")
@json_option
def features(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license,
             candidates_path, history_db, interactions_path, reviews_path, ratings_path, last_n, gamma,
             profile_text_weight, profile_source, model, jsonl_out, svmlight_out, as_json):
    """One row of p4r's persona features per (user, candidate), for your own learning-to-rank (docs/ltr.md)."""
    from ..feature_files import FeatureWriter
    from ..features import CandidatesLine, FeatureExtractor

    if jsonl_out is None and svmlight_out is None:
        raise ConfigError("give --jsonl OUT and/or --svmlight OUT: where to write the rows")
    if dry_run:
        raise ConfigError("features read persona vectors from the cluster, so there is no --dry-run")
    lines = list(LineReader().read(candidates_path, CandidatesLine))  # every line checked before any work
    ratings = read_ratings(ratings_path)
    engine_args = (engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
    _, recommender = make_recommender(engine_args, model, last_n, gamma, profile_text_weight, profile_source)
    extractor = FeatureExtractor.of(recommender, ratings)
    absent = 0
    with ExitStack() as stack:
        store = stack.enter_context(histories(index_name, engine, history_db, interactions_path, reviews_path))
        writer = stack.enter_context(FeatureWriter(jsonl_out, svmlight_out))
        for qid, (line_no, line, _) in enumerate(lines, start=1):
            where = f"{candidates_path}:{line_no}"
            rows = extractor.rows(user_of(line, store, where), line.candidates, user_id=line.user_id, qid=qid)
            absent += sum(r.features["in_index"] == 0 for r in rows)
            writer.write(rows)
    summary = {"rows": writer.rows, "queries": len(lines), "not_in_index": absent,
               "jsonl": str(jsonl_out) if jsonl_out else None, "svmlight": str(svmlight_out) if svmlight_out else None}
    if as_json:
        click.echo(json.dumps(summary))
        return
    if absent:
        click.echo(f"note: {absent} candidate row(s) not in the index: in_index 0, other features 0", err=True)
    where = " and ".join(str(p) for p in (jsonl_out, svmlight_out) if p)
    click.echo(f"{writer.rows} row(s) for {len(lines)} user line(s) written to {where}")
