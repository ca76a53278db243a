"""How the cluster backend reaches a cluster: the official client, or a dry run that contacts nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clusters.model import Distribution, Request

RETRY_STATUSES = (429, 503)
PLACEHOLDER_ID = "<item id from the previous response>"


class Transport(Protocol):
    def send(self, request: Request) -> Any: ...

    def bulk(self, actions: list[dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]: ...


class ClientTransport:
    """Over the official client: `perform_request` for bodies, the client's `streaming_bulk` for bulk."""

    def __init__(self, client: Any, distribution: Distribution):
        self.client = client
        self.distribution = distribution

    def send(self, request: Request) -> Any:
        headers = {"accept": "application/json", "content-type": "application/json"}
        if self.distribution is Distribution.ELASTICSEARCH:
            response = self.client.perform_request(request.method, request.path, params=request.params or None,
                                                   headers=headers, body=request.body)
            return response.body
        return self.client.transport.perform_request(request.method, request.path, params=request.params or None,
                                                     body=request.body, headers=headers)

    def bulk(self, actions: list[dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]:
        if self.distribution is Distribution.ELASTICSEARCH:
            from elasticsearch.helpers import streaming_bulk

            extra = {"retry_on_status": RETRY_STATUSES}
        else:
            from opensearchpy.helpers import streaming_bulk

            extra = {}
        return list(streaming_bulk(self.client, actions, chunk_size=len(actions) or 1, max_retries=3,
                                   initial_backoff=1, raise_on_error=False, raise_on_exception=False, **extra))


@dataclass
class DryRunTransport:
    """Contacts nothing: prints every request as one JSON line and answers as an empty cluster would."""

    out: Callable[[str], None]
    sent: list[Request] = field(default_factory=list)

    def send(self, request: Request) -> Any:
        self.sent.append(request)
        self.out(json.dumps(request.as_json()))
        # one placeholder hit, so that a search plan runs through and prints its later requests too
        placeholder = {"_id": PLACEHOLDER_ID, "_score": 1.0, "_source": {}}
        return {"hits": {"hits": [placeholder] if request.path.endswith("/_search") else []}, "acknowledged": True}

    def bulk(self, actions: list[dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]:
        lines = []
        for action in actions:
            meta = {"_index": action["_index"], "_id": action["_id"]}
            op = action["_op_type"]
            lines += [{op: meta}, action["_source"] if op == "index" else {"doc": action["doc"]}]
        self.send(Request("POST", "/_bulk", lines))
        return [(True, {a["_op_type"]: {"_id": a["_id"], "status": 200}}) for a in actions]


@contextlib.contextmanager
def recorded_requests(transport: Transport) -> Iterator[list[Request]]:
    """The requests sent through `transport` inside the block, in order (each one HTTP request on a
    ClientTransport); the transport is restored afterwards."""
    sent: list[Request] = []
    original = transport.send

    def send(request: Request) -> Any:
        sent.append(request)
        return original(request)

    transport.send = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        del transport.send


def http_status(exc: BaseException) -> int | None:
    """The HTTP status a client's error carries (elasticsearch-py: `status_code`; others: `status`)."""
    return getattr(exc, "status_code", None) or getattr(exc, "status", None)
