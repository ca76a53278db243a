"""A real `p4r serve` app on a real uvicorn server in a background thread, on a free loopback port."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from p4r_search.encoder import Encoder
from p4r_search.events import HistoryStore
from p4r_search.events.files import seed_from_files
from p4r_search.serve import Limits, ServedIndex, Service, SharedEncoder, create_app


class LiveServer:
    def __init__(self, app, host: str = "127.0.0.1"):
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def seeded_store(interactions: Path | None = None, reviews: Path | None = None,
                 history_db: Path | None = None) -> HistoryStore:
    """A history store seeded from the files, as `p4r serve` makes one; a fresh one in a temporary folder
    unless `history_db` is given (the test's own tmp_path is not at hand in every fixture)."""
    store = HistoryStore(history_db or Path(tempfile.mkdtemp(prefix="p4r-history-")) / "history.db")
    seed_from_files(store, interactions, reviews)
    return store


def make_service(index: Path, encoder: Encoder, interactions: Path | None = None,
                 reviews: Path | None = None, history_db: Path | None = None) -> Service:
    return Service(ServedIndex.embedded(index), SharedEncoder(encoder), seeded_store(interactions, reviews, history_db))


def serve(index: Path, encoder: Encoder, interactions: Path | None = None, *, api_key: str | None = None,
          limits: Limits | None = None, reviews: Path | None = None, history_db: Path | None = None) -> LiveServer:
    service = make_service(index, encoder, interactions, reviews, history_db)
    return LiveServer(create_app(service, api_key=api_key, limits=limits or Limits(reload_interval_s=0.1)))
