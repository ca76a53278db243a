"""What bounds a request: a worker pool with a queue, a deadline its work sees, and a body size limit."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.responses import JSONResponse

MAX_BODY = 4 * 1024 * 1024
_deadline: ContextVar[tuple[float, float] | None] = ContextVar("p4r_serve_deadline", default=None)


@dataclass(frozen=True)
class Limits:
    workers: int = 4  # requests computed at once (threads)
    queue: int = 64  # requests waiting for a worker; more are refused at once with 503
    timeout_s: float = 10.0  # waiting plus computing; past it the client gets 503
    reload_interval_s: float = 1.0  # how often the index directory is checked for a new generation


class Busy(Exception):
    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


def check_deadline(stage: str) -> None:
    """Stop the work of a request whose client already got its 503 (called between stages of the work)."""
    if (bound := _deadline.get()) is not None and time.monotonic() > bound[0]:
        raise Busy(f"the backend did not answer within {bound[1]:g} s", retry_after=5)  # as the client's 503 says


def _within(deadline: float, timeout_s: float, fn, *args):
    token = _deadline.set((deadline, timeout_s))
    try:
        return fn(*args)
    finally:
        _deadline.reset(token)


def _release(slots: asyncio.Semaphore, work: asyncio.Future) -> None:
    slots.release()  # the slot is free when the thread is
    if not work.cancelled():
        work.exception()  # retrieved, so that a timed-out request's late failure is not logged as lost


class Admission:
    """A bounded pool of worker threads with a bounded queue in front of it. The work runs with the request's
    deadline (`check_deadline`), so a request that timed out stops at its next stage and frees its worker."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="p4r-serve")
        self._slots = asyncio.Semaphore(limits.workers)
        self._waiting = 0

    async def run(self, fn, *args):
        if self._slots.locked() and self._waiting >= self.limits.queue:
            raise Busy(f"{self._waiting} requests are already waiting; try again shortly")
        loop = asyncio.get_running_loop()
        timeout = self.limits.timeout_s
        deadline = time.monotonic() + timeout
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise Busy(f"no worker was free within {timeout:g} s") from None
        finally:
            self._waiting -= 1
        work = loop.run_in_executor(self.pool, _within, deadline, timeout, fn, *args)
        work.add_done_callback(lambda done: _release(self._slots, done))
        try:
            return await asyncio.wait_for(asyncio.shield(work), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise Busy(f"the backend did not answer within {timeout:g} s", retry_after=5) from None


def too_large(size: int | None, limit: int) -> JSONResponse:
    what = f"the body is {size:,} bytes" if size is not None else f"the body passed {limit:,} bytes"
    return JSONResponse({"detail": f"{what}; at most {limit:,}", "type": "too_large"}, status_code=413)


class _TooLarge(Exception):
    """Raised into the app's read of the body; the app's answer to it is replaced by the 413."""


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whatever their encoding: a Content-Length over it at once,
    a chunked body as soon as the bytes received pass it (pure ASGI, so nothing is buffered first)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await too_large(int(length), self.limit)(scope, receive, send)
        received, over, started = 0, False, False

        async def counted():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _TooLarge()
            return message

        async def guarded(message):
            nonlocal started
            if over and not started:
                return  # whatever the app answers to the broken read, the client gets the 413
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await too_large(None, self.limit)(scope, receive, send)
