"""`p4r serve`: the recommendation service and its page (p4r_search.serve), on one index."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import click

from ..errors import ConfigError
from .app import cli
from .engines import engine_options, open_cluster
from .options import FiniteFloatRange, input_file, model_option

API_KEY_ENV = "P4R_SERVE_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_key(host: str) -> str | None:
    """The API key from the environment; required unless the service listens on loopback only."""
    key = os.environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise ConfigError(f"--host {host} is reachable from other machines: set {API_KEY_ENV} to the API key that "
                          "clients must send (Authorization: Bearer KEY), or listen on 127.0.0.1")
    return key


@cli.command()
@engine_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on; anything but loopback needs {API_KEY_ENV}.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--interactions", "interactions_path", type=input_file, default=None,
              help="Interactions JSONL: users to look up by user_id (and to pick on the page).")
@click.option("--reviews", "reviews_path", type=input_file, default=None,
              help="Reviews JSONL: users' own reviews, for profile source reviews or both.")
@click.option("--history-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The users' durable history (SQLite), which POST /v1/events adds to and --interactions and "
                   "--reviews seed [default: INDEX.history.db beside the embedded index, or in the current "
                   "folder for a cluster index].")
@model_option
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Requests computed at once (threads).")
@click.option("--queue", type=click.IntRange(0, 100_000), default=64, show_default=True,
              help="Requests waiting for a worker; beyond it the service answers 503 at once.")
@click.option("--timeout", type=FiniteFloatRange(0.1), default=10.0, show_default=True,
              help="Seconds a request may wait and run before it gets 503.")
@click.option("--reload-interval", type=FiniteFloatRange(0.05), default=1.0, show_default=True,
              help="Embedded: seconds between checks for a new index generation (served without a restart).")
def serve(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license, host, port,
          interactions_path, reviews_path, history_db, model, workers, queue, timeout, reload_interval):
    """Serve recommendations over HTTP (JSON API at /v1, OpenAPI at /docs) and a page at /."""
    try:
        import uvicorn

        from ..serve import Limits, ServedIndex, Service, SharedEncoder, create_app
    except ImportError as exc:
        raise ConfigError(f"p4r serve needs FastAPI and uvicorn ({exc.name} is missing): "
                          "pip install 'p4r-search[serve]'") from None
    from threadpoolctl import threadpool_limits

    from ..encoder import Encoder
    from ..events import HistoryStore, default_history_db
    from ..events.files import seed_from_files

    if dry_run:
        raise ConfigError("p4r serve answers from an index; --dry-run is for recommend and index commands")
    key = service_key(host)
    threadpool_limits(1, user_api="blas")  # see make_recommender: one BLAS thread per scan
    if engine == "embedded":
        index = ServedIndex.embedded(index_name)
    else:
        args = (engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
        index = ServedIndex.cluster(open_cluster(*args), f"{engine} index {index_name}")
    store = HistoryStore(history_db or default_history_db(index.path or Path(index_name)))
    seeded = seed_from_files(store, interactions_path, reviews_path)
    encoder = SharedEncoder(Encoder(model or index.current.backend.model_name))
    encoder.encode(["warm-up"])  # load the model and run it once before listening: the first request pays nothing
    limits = Limits(workers=workers, queue=queue, timeout_s=timeout, reload_interval_s=reload_interval)
    app = create_app(Service(index, encoder, store, engine), api_key=key, limits=limits)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {index.path or index.describe} on http://{shown}:{port}/ (API docs at /docs)"
               f"{'; API key required' if key else ''}", err=True)
    click.echo(f"history: {store.path} ({store.counts()['users']} users; {seeded} rows new from the start-up files)",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=int(timeout) + 1)
