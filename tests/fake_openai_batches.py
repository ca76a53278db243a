"""The Files and Batches endpoints of the FakeOpenAI stand-in (fake_openai.py), kept in memory.

Shapes follow the `openai` client's types (openai.types.FileObject, Batch, BatchRequestCounts) and the documented
batch output lines: `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
As on OpenAI, a line whose request got a non-2xx answer goes to the error file with its response; a line that
did not run (expired, or not a chat completion) goes there with `response: null` and an `error` {code, message};
`output_file_id` / `error_file_id` are set only when that file has lines.

Status: a new batch is "validating"; each retrieve moves it to "in_progress" until the `batch_polls`-th retrieve,
which runs every line through the same answer function (and fault script) as the synchronous endpoint and
completes it. Cancel makes it "cancelling", and the next retrieve "cancelled" (lines are not run).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

TERMINAL = ("completed", "failed", "expired", "cancelled")
Route = tuple[int, Any]  # (HTTP status, JSON payload or raw bytes)


def parse_multipart(raw: bytes, content_type: str) -> dict[str, str | bytes]:
    """Form fields of a multipart/form-data body: text fields as str, file fields as bytes."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, str | bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        fields[name] = data if part.get_filename() else data.decode()
        if part.get_filename():
            fields[f"{name}.filename"] = part.get_filename()
    return fields


def _error(status: int, message: str) -> Route:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


class BatchStore:
    """Uploaded files and batches. `answer(request_json, in_batch=True)` answers one line (fake_openai.Answer)."""

    def __init__(self, answer: Callable[..., Any], *, batch_polls: int | None) -> None:
        self._answer = answer
        self.batch_polls = batch_polls
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._polls: dict[str, int] = {}
        self._lock = threading.RLock()

    # --- files --------------------------------------------------------------------------------------------------
    def upload(self, raw: bytes, content_type: str) -> dict:
        """POST /v1/files: the multipart form's `file` and `purpose`."""
        fields = parse_multipart(raw, content_type)
        data = fields.get("file", b"")
        filename = str(fields.get("file.filename", "upload.jsonl"))
        return self.add_file(data if isinstance(data, bytes) else data.encode(), filename, str(fields.get("purpose")))

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        record = {
            "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
            "status_details": None,
        }
        with self._lock:
            self.files[file_id] = record
            self.contents[file_id] = data
        return record

    # --- routing ------------------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, str]) -> Route | None:
        """The answer to a files or batches request other than the upload; None if the path is not one of them."""
        parts = path.strip("/").split("/")  # ["v1", "files" | "batches", id?, action?]
        if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("files", "batches"):
            return None
        if parts[1] == "files":
            return self._route_files(method, parts[2:], query)
        return self._route_batches(method, parts[2:], query)

    def _route_files(self, method: str, rest: list[str], query: dict[str, str]) -> Route | None:
        with self._lock:
            if method == "GET" and not rest:
                return 200, _page(list(self.files.values()), query)
            if not rest or rest[0] not in self.files:
                return _error(404, f"No such File object: {rest[0] if rest else ''}")
            file_id = rest[0]
            if method == "GET" and len(rest) == 1:
                return 200, self.files[file_id]
            if method == "GET" and rest[1:] == ["content"]:
                return 200, self.contents[file_id]
            if method == "DELETE" and len(rest) == 1:
                del self.files[file_id], self.contents[file_id]
                return 200, {"id": file_id, "object": "file", "deleted": True}
        return None

    def _route_batches(self, method: str, rest: list[str], query: dict[str, str]) -> Route | None:
        if method == "GET" and not rest:
            with self._lock:
                return 200, _page(list(self.batches.values()), query)
        if method == "POST" and not rest:
            return None  # the create needs the body: see create()
        with self._lock:
            if not rest or rest[0] not in self.batches:
                return _error(404, f"No batch found with id '{rest[0] if rest else ''}'.")
            batch_id = rest[0]
            if method == "GET" and len(rest) == 1:
                return 200, self._poll(batch_id)
            if method == "POST" and rest[1:] == ["cancel"]:
                return self._cancel(batch_id)
        return None

    # --- batches ------------------------------------------------------------------------------------------------
    def create(self, body: dict) -> Route:
        """POST /v1/batches: {input_file_id, endpoint, completion_window, metadata?}."""
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return _error(400, f"Invalid input_file_id: {body.get('input_file_id') if isinstance(body, dict) else ''}")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, f"Unsupported endpoint in this stand-in: {body.get('endpoint')}")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be 24h")
        now = int(time.time())
        batch = {
            "id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": body["endpoint"],
            "errors": None, "input_file_id": body["input_file_id"], "completion_window": "24h",
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }
        with self._lock:
            self.batches[batch["id"]] = batch
            self._polls[batch["id"]] = 0
        return 200, batch

    def complete(self, batch_id: str) -> dict:
        """Run and complete a batch now (no-op if it is already finished)."""
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] not in TERMINAL:
                self._run(batch)
            return batch

    def _poll(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        if batch["status"] in TERMINAL:
            return batch
        if batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
            return batch
        self._polls[batch_id] += 1
        if self.batch_polls is not None and self._polls[batch_id] >= self.batch_polls:
            self._run(batch)
        else:
            batch.update(status="in_progress", in_progress_at=batch["in_progress_at"] or int(time.time()))
        return batch

    def _cancel(self, batch_id: str) -> Route:
        batch = self.batches[batch_id]
        if batch["status"] in TERMINAL:
            return _error(409, f"Cannot cancel a batch with status {batch['status']}.")
        batch.update(status="cancelling", cancelling_at=int(time.time()))
        return 200, batch

    def _run(self, batch: dict) -> None:
        lines = [line for line in self.contents[batch["input_file_id"]].decode().splitlines() if line.strip()]
        outputs, errors = [], []
        for line in lines:
            result, ok = self._run_line(json.loads(line))
            (outputs if ok else errors).append(json.dumps(result) + "\n")
        now = int(time.time())
        batch.update(
            status="completed", in_progress_at=batch["in_progress_at"] or now, finalizing_at=now, completed_at=now,
            request_counts={"total": len(lines), "completed": len(outputs), "failed": len(errors)},
            output_file_id=self._result_file(batch, outputs, "output"),
            error_file_id=self._result_file(batch, errors, "error"),
        )

    def _run_line(self, line: dict) -> tuple[dict, bool]:
        result = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line.get("custom_id"), "response": None,
                  "error": None}
        if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
            result["error"] = {"code": "invalid_request", "message": "Only POST /v1/chat/completions is supported."}
            return result, False
        answer = self._answer(line.get("body") or {}, in_batch=True)
        if answer.expired:
            result["error"] = {"code": "batch_expired", "message": "This request could not be executed before the "
                               "completion window expired."}
            return result, False
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        result["response"] = {"status_code": answer.status, "request_id": request_id, "body": answer.body}
        return result, 200 <= answer.status < 300

    def _result_file(self, batch: dict, lines: list[str], kind: str) -> str | None:
        if not lines:
            return None
        record = self.add_file("".join(lines).encode(), f"{batch['id']}_{kind}.jsonl", f"batch_{kind}")
        return record["id"]


def _page(objects: list[dict], query: dict[str, str]) -> dict:
    """A cursor page, newest first, honouring `after` (an object id) and `limit` (default 20)."""
    objects = objects[::-1]  # the store's dicts keep creation order
    ids = [o["id"] for o in objects]
    start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
    limit = int(query.get("limit", 20))
    page = objects[start : start + limit]
    return {
        "object": "list", "data": page, "has_more": start + limit < len(objects),
        "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
    }
