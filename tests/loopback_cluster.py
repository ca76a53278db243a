"""A loopback STAND-IN for an Elasticsearch / OpenSearch cluster, for the cluster-backend tests.

This is not Elasticsearch or OpenSearch: no such server can run where these tests run (no network, no
JVM, two cores), so this small threaded HTTP server on 127.0.0.1 answers the handful of endpoints that
`p4r index build/attach` use, the way the real servers do (same paths, bodies and status codes), and
records every request it receives. What it checks is what p4r and the official clients put on the wire
and how they react to the answers; it says nothing about how a real cluster would index or rank.

It answers:
- `GET /`: a version document (Elasticsearch 8.17.0, or OpenSearch 2.19.0); every Elasticsearch answer
  carries `X-Elastic-Product: Elasticsearch`, which the official client requires;
- `GET /_license` (Elasticsearch): a basic, active licence;
- `PUT /{index}`, `GET|PUT /{index}/_mapping`: kept in memory; `POST /{index}/_refresh`: acknowledged;
- `POST /{index}/_count`, `_mget`, and a `size: 0` `_search` with one `terms` aggregation: evaluated over the
  stored documents by `loopback_queries.py` (the few query kinds p4r's index checks send; no scoring);
- `POST|PUT [/{index}]/_bulk` (NDJSON): from a script. `whole_request_failures` is a queue of statuses
  (429, 503, …) answered, one per request, to the next bulk requests as a whole; then items are answered
  one by one: ids in `rejected` always fail with a 400 `mapper_parsing_exception` (permanent), ids in
  `throttled` fail with their status (429 or 503) the next `n` times they are sent (transient), `update`
  of a missing document fails with 404, and everything else is written into `docs`.

With `strict_media_types`, an Elasticsearch stand-in also checks the version that the client asks for in
`Accept` / `Content-Type` (`application/vnd.elasticsearch+json; compatible-with=N`) as the real server
does: a server of major M accepts N = M or M - 1 and answers anything else with a 400
`media_type_header_exception`.

The server runs in a daemon thread and stops by itself after `max_lifetime` seconds at the latest.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import loopback_queries

ES_VERSION = "8.17.0"
COMPATIBLE_WITH = re.compile(r"compatible-with=(\d+)")
OS_ROOT = {
    "name": "loopback-stand-in",
    "cluster_name": "loopback",
    "version": {"distribution": "opensearch", "number": "2.19.0", "lucene_version": "9.12.1"},
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}
WHOLE_REQUEST_ERRORS = {
    429: {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"},
    503: {"type": "unavailable_shards_exception", "reason": "primary shard is not active"},
}
ITEM_ERRORS = {
    400: {"type": "mapper_parsing_exception",
          "reason": "failed to parse field [personas.vector] of type [dense_vector]"},
    429: {"type": "es_rejected_execution_exception", "reason": "rejected execution of primary operation"},
    503: {"type": "unavailable_shards_exception", "reason": "[items][0] primary shard is not active"},
}


@dataclass
class Recorded:
    """One request as received: lower-cased header names, the raw body and its JSON lines."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the stand-in answered

    @property
    def lines(self) -> list[Any]:
        """The body as JSON values: one per non-empty line (NDJSON), so one for a plain JSON body."""
        return [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class LoopbackCluster:
    flavour: str = "es"  # "es" or "opensearch"
    es_version: str = ES_VERSION
    strict_media_types: bool = False
    max_lifetime: float = 120.0
    whole_request_failures: deque[int] = field(default_factory=deque)
    rejected: set[str] = field(default_factory=set)
    throttled: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (status, times left)
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # index -> `index.knn` (OpenSearch); an index given in `mappings` and not here was made with knn on
    knn_settings: dict[str, bool] = field(default_factory=dict)
    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    sent_ids: list[str] = field(default_factory=list)  # every bulk item id received, in order, retries included

    def __post_init__(self) -> None:
        if self.flavour not in ("es", "opensearch"):
            raise ValueError(self.flavour)
        self.whole_request_failures = deque(self.whole_request_failures)
        self.rejected = set(self.rejected)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> LoopbackCluster:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a handler thread for long

            def _handle(self) -> None:
                cluster._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-cluster", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- what was received --------------------------------------------------------------------------
    def bulk_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # -- answering ----------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        split = urlsplit(handler.path)
        record = Recorded(handler.command, split.path, split.query,
                          {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
            try:
                status, answer = self._answer(record)
            except Exception as exc:  # a bug here must show up as a 500, not as a hang
                status, answer = 500, {"error": {"type": "stand_in_failure", "reason": repr(exc)}, "status": 500}
            record.status = status
        payload = json.dumps(answer).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        if self.flavour == "es":
            handler.send_header("X-Elastic-Product", "Elasticsearch")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def _answer(self, r: Recorded) -> tuple[int, Any]:
        if refused := self._refused_media_type(r):
            return 400, refused
        parts = [p for p in r.path.split("/") if p]
        if r.method == "GET" and not parts:
            if self.flavour == "opensearch":
                return 200, OS_ROOT
            return 200, {"name": "loopback-stand-in", "cluster_name": "loopback",
                         "version": {"number": self.es_version, "build_flavor": "default"},
                         "tagline": "You Know, for Search"}
        if r.method == "GET" and parts == ["_nodes", "plugins"]:
            # the shape a real node answers with filter_path (run on OpenSearch 3.5.0, Elasticsearch 8.19.0)
            names = [{"name": n} for n in DEFAULT_MODULES[self.flavour]]
            return 200, {"nodes": {"loopback-node": {"modules": names}}}
        if r.method == "GET" and parts == ["_license"] and self.flavour == "es":
            return 200, {"license": {"type": "basic", "status": "active", "uid": "loopback"}}
        if parts and parts[-1] == "_bulk" and r.method in ("POST", "PUT"):
            return self._bulk(r, parts[0] if len(parts) == 2 else None)
        if len(parts) == 1 and r.method == "PUT" and not parts[0].startswith("_"):
            if parts[0] in self.mappings:
                return 400, _error(400, "resource_already_exists_exception", f"index [{parts[0]}] already exists")
            self.mappings[parts[0]] = (r.json or {}).get("mappings", {})
            knn = (r.json or {}).get("settings", {}).get("index", {}).get("knn")
            self.knn_settings[parts[0]] = str(knn).lower() == "true"
            self.docs.setdefault(parts[0], {})
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": parts[0]}
        if len(parts) == 2 and parts[1] == "_settings" and r.method == "GET":
            if parts[0] not in self.mappings:
                return 404, _error(404, "index_not_found_exception", f"no such index [{parts[0]}]")
            # the real answer under filter_path=*.settings.index.knn: {} where the setting was never set
            knn = self.knn_settings.get(parts[0], self.flavour == "opensearch")
            return 200, {parts[0]: {"settings": {"index": {"knn": "true"}}}} if knn else {}
        if len(parts) == 2 and parts[1] == "_mapping":
            index = parts[0]
            if index not in self.mappings:
                return 404, _error(404, "index_not_found_exception", f"no such index [{index}]")
            if r.method == "GET":
                return 200, {index: {"mappings": self.mappings[index]}}
            if r.method == "PUT":
                props = self.mappings[index].setdefault("properties", {})
                props.update((r.json or {}).get("properties", {}))
                return 200, {"acknowledged": True}
        if len(parts) == 2 and parts[1] == "_refresh" and r.method == "POST":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if len(parts) == 2 and parts[1] in ("_count", "_search", "_mget") and r.method in ("GET", "POST"):
            return self._read(r, parts[0], parts[1])
        return 404, _error(404, "stand_in_unsupported", f"the stand-in does not answer {r.method} {r.path}")

    def _read(self, r: Recorded, index: str, endpoint: str) -> tuple[int, Any]:
        """The index checks' reads (loopback_queries.py); a search it cannot evaluate is a 400."""
        if index not in self.mappings and index not in self.docs:
            return 404, _error(404, "index_not_found_exception", f"no such index [{index}]")
        docs = self.docs.get(index, {})
        try:
            if endpoint == "_count":
                return 200, loopback_queries.count(docs, r.json)
            if endpoint == "_mget":
                return 200, loopback_queries.mget(index, docs, r.json or {}, r.query)
            return 200, loopback_queries.aggregate(docs, r.json or {})
        except loopback_queries.Unsupported as exc:
            return 400, _error(400, "stand_in_unsupported", str(exc))

    def _refused_media_type(self, r: Recorded) -> dict[str, Any] | None:
        if self.flavour != "es" or not self.strict_media_types:
            return None
        major = int(self.es_version.split(".")[0])
        for name in ("accept", "content-type"):
            match = COMPATIBLE_WITH.search(r.headers.get(name, ""))
            if match and int(match[1]) not in (major, major - 1):
                shown = name.title()
                why = (f"{shown} version must be either version {major} or {major - 1}, but found {match[1]}. "
                       f"{shown}={r.headers[name]}")
                body = _error(400, "media_type_header_exception",
                              "Invalid media-type value on headers [Accept, Content-Type]")
                body["error"]["caused_by"] = {"type": "status_exception", "reason": why}
                return body
        return None

    def _bulk(self, r: Recorded, path_index: str | None) -> tuple[int, Any]:
        if self.whole_request_failures:
            status = self.whole_request_failures.popleft()
            return status, {"error": {**WHOLE_REQUEST_ERRORS.get(status, {"type": "error", "reason": "scripted"}),
                                      "root_cause": []}, "status": status}
        lines = r.lines
        items = []
        i = 0
        while i < len(lines):
            op, meta = next(iter(lines[i].items()))
            source = lines[i + 1] if op != "delete" else None
            i += 1 if op == "delete" else 2
            index, doc_id = meta.get("_index", path_index), meta["_id"]
            self.sent_ids.append(doc_id)
            items.append({op: {"_index": index, "_id": doc_id, **self._item(op, index, doc_id, source)}})
        errors = any(not 200 <= next(iter(item.values()))["status"] < 300 for item in items)
        return 200, {"took": 3, "errors": errors, "items": items}

    def _item(self, op: str, index: str, doc_id: str, source: Any) -> dict[str, Any]:
        if doc_id in self.rejected:
            return {"status": 400, "error": ITEM_ERRORS[400]}
        status, left = self.throttled.get(doc_id, (0, 0))
        if left > 0:
            self.throttled[doc_id] = (status, left - 1)
            return {"status": status, "error": ITEM_ERRORS[status]}
        docs = self.docs.setdefault(index, {})
        if op == "update":
            if doc_id not in docs:
                return {"status": 404, "error": {"type": "document_missing_exception",
                                                 "reason": f"[{doc_id}]: document missing"}}
            docs[doc_id] = {**docs[doc_id], **source["doc"]}
            return {"status": 200, "result": "updated", "_version": 2}
        if op == "delete":
            found = docs.pop(doc_id, None) is not None
            return {"status": 200 if found else 404, "result": "deleted" if found else "not_found"}
        created = doc_id not in docs
        docs[doc_id] = source
        return {"status": 201 if created else 200, "result": "created" if created else "updated", "_version": 1}


# what a default distribution ships, in part: enough for p4r's capability checks
DEFAULT_MODULES = {"es": ["lang-painless", "transport-netty4", "x-pack-core"],
                   "opensearch": ["lang-painless", "opensearch-knn", "opensearch-neural-search", "transport-netty4"]}


def _error(status: int, kind: str, reason: str) -> dict[str, Any]:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status}


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
