"""A loopback stand-in for an OpenAI-compatible API, for fault injection and the Batch API.

It is a stand-in because no real provider is reachable from CI: the real-model tests use llama.cpp's server
(the `llm_server` fixture), which cannot be told to fail on cue and has no Files or Batches endpoints. This
server answers the subset of the OpenAI API that the `openai` Python client uses for chat completions and
batches, in the shapes of the client's own types (openai.types.Batch, FileObject, ChatCompletion):

- `POST /v1/chat/completions`: the assistant content comes from a responder, `callable(request_json) -> str | Reply`,
  unless a scripted fault is due (see `Fault` and `FakeOpenAI.script`).
- `GET /v1/models`.
- `POST /v1/files` (multipart), `GET /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content`.
- `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`
  (see fake_openai_batches.py).

Usage::

    with FakeOpenAI(responder=lambda req: '{"personas": []}') as fake:
        fake.script(rate_limited(retry_after_s=0.01), server_error())           # the next two requests fail
        fake.script(malformed_json(), key="item-7")                              # a request naming item-7 fails
        client = fake.client(max_retries=0)
        ...
        assert fake.count("/v1/chat/completions") == 3
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fake_openai_answers import (
    DEFAULT_MODEL,
    Answer,
    Fault,
    FaultScript,
    Reply,
    Responder,
    answer_for,
    chat_completion,
    content,
    dropped,
    echo_responder,
    error_body,
    estimate_tokens,
    expired,
    malformed_json,
    prompt_text,
    rate_limited,
    server_error,
    slow,
    usage_for,
)
from fake_openai_batches import BatchStore, parse_multipart
from typing_extensions import Self

__all__ = [  # tests import everything from here
    "CHAT_PATH", "DEFAULT_MODEL", "Answer", "FakeOpenAI", "Fault", "FaultScript", "RecordedRequest", "Reply",
    "Responder", "answer_for", "chat_completion", "content", "dropped", "echo_responder", "error_body",
    "estimate_tokens", "expired", "malformed_json", "prompt_text", "rate_limited", "server_error", "slow", "usage_for",
]

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, the multipart form fields for uploads, or None
    time: float


class FakeOpenAI:
    """The stand-in server on 127.0.0.1 (a free port), serving from a thread. Use it as a context manager.

    responder: makes the assistant content of each chat completion (default: `echo_responder`); settable.
    batch_polls: a batch completes on this retrieve (`GET /v1/batches/{id}`); None: only `complete_batch(id)`.
    api_key: if given, requests without `Authorization: Bearer <api_key>` get a 401.
    echo_credentials: error messages end with the request's Authorization header, as some gateways' do.
    """

    def __init__(
        self,
        responder: Responder = echo_responder,
        *,
        model: str = DEFAULT_MODEL,
        batch_polls: int | None = 2,
        api_key: str | None = None,
        echo_credentials: bool = False,
    ) -> None:
        self.echo_credentials = echo_credentials
        self.responder = responder
        self.model = model
        self.api_key = api_key
        self.faults = FaultScript()
        self.batches = BatchStore(self.answer, batch_polls=batch_polls)
        self.requests: list[RecordedRequest] = []
        self.peak_concurrency = 0  # most chat completions in flight at once
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        poll_s = 0.05  # stop() waits up to one poll interval (the default 0.5 s adds up over many tests)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(poll_s,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow answers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL to give the openai client (or OPENAI_BASE_URL): http://127.0.0.1:<port>/v1."""
        assert self._httpd is not None, "FakeOpenAI is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def client(self, **kwargs):
        """An `openai.OpenAI` client for this server; kwargs (max_retries, timeout, ...) go to the client."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=self.api_key or "test-key", **kwargs)

    # --- scripting and assertions -----------------------------------------------------------------------------
    def script(self, *faults: Fault, key: str | None = None) -> None:
        """Queue faults, consumed one per chat completion (synchronous or batch line) in order.

        With `key`, they apply only to requests whose prompt text contains `key`; keyed faults come first.
        """
        self.faults.add(faults, key)

    def count(self, path: str = CHAT_PATH) -> int:
        """How many requests reached `path` (exact match, e.g. "/v1/chat/completions", "/v1/files")."""
        return self.counts()[path]

    def counts(self) -> Counter:
        with self._lock:
            return Counter(r.path for r in self.requests)

    def chat_requests(self) -> list[dict]:
        """The parsed bodies of the synchronous chat completion requests, in arrival order."""
        with self._lock:
            return [r.body for r in self.requests if r.path == CHAT_PATH]

    def complete_batch(self, batch_id: str) -> dict:
        """Process and complete a batch now, whatever `batch_polls` says; returns the batch object."""
        return self.batches.complete(batch_id)

    # --- answering ----------------------------------------------------------------------------------------------
    def answer(self, request: dict, *, in_batch: bool = False) -> Answer | None:
        """The answer to one chat completion request (None: drop the connection). Used by the batch store too."""
        fault = self.faults.next_for(prompt_text(request)) or Fault("ok")
        if fault.delay_s and not in_batch:
            self._stopping.wait(fault.delay_s)  # stop() cuts it short
        return answer_for(request, fault, self.responder, in_batch=in_batch)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _enter_chat(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)

    def _leave_chat(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

        def log_message(self, *args) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            content_type = self.headers.get("Content-Type", "")
            body = _parse_body(raw, content_type)
            server._record(RecordedRequest(method, path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
            if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                return self._json(401, error_body(401, "Incorrect API key provided."))
            if method == "POST" and path == CHAT_PATH:
                return self._chat(body)
            if method == "GET" and path == "/v1/models":
                return self._json(200, {"object": "list", "data": [_model_object(server.model)]})
            if method == "POST" and path == "/v1/files":
                return self._json(200, server.batches.upload(raw, content_type))
            if method == "POST" and path == "/v1/batches":
                return self._json(*server.batches.create(body))
            routed = server.batches.route(method, path, _query(query))
            if routed is None:
                return self._json(404, error_body(404, f"No route {method} {path}."))
            status, payload = routed
            if isinstance(payload, bytes):
                return self._send(status, payload, "application/octet-stream")
            return self._json(status, payload)

        def _chat(self, request: dict) -> None:
            server._enter_chat()
            try:
                answer = server.answer(request)
            finally:
                server._leave_chat()
            if answer is None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._json(answer.status, answer.body, answer.headers)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            if server.echo_credentials and status >= 400 and isinstance(payload, dict) and "error" in payload:
                sent = self.headers.get("Authorization")
                payload = {"error": {**payload["error"], "message": f"{payload['error']['message']}: {sent}"}}
            self._send(status, json.dumps(payload).encode(), "application/json", headers)

        def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type.startswith("multipart/form-data"):
        return {name: (value if isinstance(value, str) else f"<{len(value)} bytes>")
                for name, value in parse_multipart(raw, content_type).items()}
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _query(query: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query))


def _model_object(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "fake-openai"}
