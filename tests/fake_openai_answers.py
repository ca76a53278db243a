"""What the FakeOpenAI stand-in (fake_openai.py) answers: scripted faults and OpenAI-shaped bodies.

Pure functions and small records; the server and its batch store both answer through `answer_for`.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

DEFAULT_MODEL = "fake-model"

@dataclass(frozen=True)
class Reply:
    """What a responder may return instead of a bare string: the content and, optionally, the token counts."""

    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Responder = Callable[[dict], "str | Reply"]


@dataclass(frozen=True)
class Fault:
    """One scripted answer to one chat completion, used instead of the responder's.

    kind: "status" (an HTTP error `status`), "content" (a 200 whose content is `content`), "ok" (the responder's
    answer), "drop" (the connection is closed without a response), "expired" (in a batch only: the line is
    reported as `batch_expired`; on the synchronous endpoint it is a 500). `delay_s` is slept first (not in batches).
    """

    kind: Literal["status", "content", "ok", "drop", "expired"]
    status: int = 200
    content: str | None = None
    delay_s: float = 0.0
    retry_after_s: float | None = None


def rate_limited(retry_after_s: float = 0.01) -> Fault:
    """HTTP 429 with `Retry-After` (seconds, may be fractional) and `retry-after-ms` headers."""
    return Fault("status", status=429, retry_after_s=retry_after_s)


def server_error(status: int = 500) -> Fault:
    """An HTTP 5xx (or any other status) with an OpenAI-shaped error body."""
    return Fault("status", status=status)


def malformed_json(text: str = '{"personas": [{"name": "Cut off') -> Fault:
    """A 200 whose assistant content is not valid JSON."""
    return Fault("content", content=text)


def content(text: str) -> Fault:
    """A 200 whose assistant content is exactly `text` (e.g. personas citing unknown evidence ids)."""
    return Fault("content", content=text)


def slow(delay_s: float, then: Fault | None = None) -> Fault:
    """Sleep `delay_s` before answering (with `then`, or the responder): makes a client with a shorter timeout fail."""
    return replace(then or Fault("ok"), delay_s=delay_s)


def dropped() -> Fault:
    """Close the connection without answering (the client sees a connection error)."""
    return Fault("drop")


def expired() -> Fault:
    """In a batch: the line ends in the error file as `batch_expired`, with no response."""
    return Fault("expired")


@dataclass(frozen=True)
class Answer:
    """The outcome of one chat completion: an HTTP status with a JSON body, or a dropped connection."""

    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    expired: bool = False


def estimate_tokens(text: str) -> int:
    """The stand-in's token count: one token per 4 characters, rounded up (the usual rule of thumb)."""
    return math.ceil(len(text) / 4)


def prompt_text(request: dict) -> str:
    """All message contents of a chat request, joined by newlines (text parts only)."""
    parts = []
    for message in request.get("messages", []):
        value = message.get("content")
        if isinstance(value, list):
            value = "\n".join(p.get("text", "") for p in value if isinstance(p, dict))
        parts.append(value or "")
    return "\n".join(parts)


def usage_for(request: dict, reply: Reply) -> dict[str, int]:
    """The `usage` block: the reply's counts where given, else `estimate_tokens` of the prompt and the content."""
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_tokens(prompt_text(request))
    completion = reply.completion_tokens if reply.completion_tokens is not None else estimate_tokens(reply.content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(request: dict, reply: Reply) -> dict:
    """A `chat.completion` body, as openai.types.chat.ChatCompletion parses it."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", DEFAULT_MODEL),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_for(request, reply),
    }


def error_body(status: int, message: str) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    code = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "not_found"}.get(status, "server_error")
    kind = "requests" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def echo_responder(request: dict) -> str:
    """The default responder: the last message's content, as a JSON string."""
    messages = request.get("messages") or [{}]
    return json.dumps({"echo": messages[-1].get("content")})


class FaultScript:
    """Faults consumed in order: per key (a substring of the prompt) first, then the unkeyed queue. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keyed: dict[str, deque[Fault]] = {}
        self._any: deque[Fault] = deque()

    def add(self, faults: tuple[Fault, ...], key: str | None) -> None:
        with self._lock:
            queue = self._any if key is None else self._keyed.setdefault(key, deque())
            queue.extend(faults)

    def next_for(self, prompt: str) -> Fault | None:
        with self._lock:
            for key, queue in self._keyed.items():
                if queue and key in prompt:
                    return queue.popleft()
            return self._any.popleft() if self._any else None

    def pending(self) -> int:
        with self._lock:
            return len(self._any) + sum(len(q) for q in self._keyed.values())


def answer_for(request: dict, fault: Fault, responder: Responder, *, in_batch: bool = False) -> Answer | None:
    """The answer to one chat completion request under `fault` (None: drop the connection). Does not sleep."""
    if fault.kind == "drop":
        return Answer(500, error_body(500, "The server dropped the request.")) if in_batch else None
    if fault.kind == "expired":
        return Answer(0, None, expired=True) if in_batch else Answer(500, error_body(500, "Expired."))
    if fault.kind == "status":
        headers = {}
        if fault.retry_after_s is not None:
            headers = {"Retry-After": f"{fault.retry_after_s:g}", "retry-after-ms": f"{fault.retry_after_s * 1000:g}"}
        return Answer(fault.status, error_body(fault.status, f"Scripted HTTP {fault.status}."), headers)
    if fault.kind == "content":
        reply = Reply(fault.content or "")
    else:
        reply = responder(request)
        reply = reply if isinstance(reply, Reply) else Reply(str(reply))
    return Answer(200, chat_completion(request, reply))
