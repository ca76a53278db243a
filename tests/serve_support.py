"""A real `p4r serve` app on a real uvicorn server in a background thread, on a free loopback port."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from p4r_search.encoder import Encoder
from p4r_search.serve import Limits, ServedIndex, Service, SharedEncoder, Users, create_app


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


def make_service(index: Path, encoder: Encoder, interactions: Path | None = None,
                 reviews: Path | None = None) -> Service:
    return Service(ServedIndex.embedded(index), SharedEncoder(encoder), Users.load(interactions, reviews))


def serve(index: Path, encoder: Encoder, interactions: Path | None = None, *, api_key: str | None = None,
          limits: Limits | None = None) -> LiveServer:
    service = make_service(index, encoder, interactions)
    return LiveServer(create_app(service, api_key=api_key, limits=limits or Limits(reload_interval_s=0.1)))
