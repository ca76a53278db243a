"""The HTTP app: JSON endpoints over `Service`, the page, and the rules of a well-behaved service.

- Invalid requests: 422 with the field and the reason (pydantic's, or the library's check in words).
- Unknown users or items: 404. A busy service (every worker busy and the queue full, or no answer within
  the request timeout) or a broken backend (an index under repair, a cluster that does not answer): 503
  with Retry-After, never a hang.
- With an API key, every /v1 endpoint needs it (`Authorization: Bearer KEY` or `X-API-Key: KEY`); the page
  and /health, /ready do not. The key is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from ..clusters.capabilities import CapabilityError
from ..errors import ChoiceError, ConfigError, IndexStateError, InputError, NotFoundError, P4RError
from ..models import ItemCard
from ..recommend import Explanation
from .page import mount_page
from .schemas import ExplainRequest, IndexInfo, RecommendRequest, RecommendResponse, UserHistory, UserSummary
from .service import Service

log = logging.getLogger("p4r.serve")
MAX_BODY = 4 * 1024 * 1024


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


class Admission:
    """A bounded pool of worker threads with a bounded queue in front of it."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="p4r-serve")
        self._slots = asyncio.Semaphore(limits.workers)
        self._waiting = 0

    async def run(self, fn, *args):
        if self._slots.locked() and self._waiting >= self.limits.queue:
            raise Busy(f"{self._waiting} requests are already waiting; try again shortly")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.limits.timeout_s)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise Busy(f"no worker was free within {self.limits.timeout_s:g} s") from None
        finally:
            self._waiting -= 1
        work = loop.run_in_executor(self.pool, fn, *args)
        work.add_done_callback(lambda _: self._slots.release())  # the slot is free when the thread is
        try:
            return await asyncio.wait_for(asyncio.shield(work), max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            raise Busy(f"the backend did not answer within {self.limits.timeout_s:g} s", retry_after=5) from None


def create_app(service: Service, *, api_key: str | None = None, limits: Limits | None = None) -> FastAPI:
    """The app for one service, whose index is open and encoder loaded (so it is ready once it listens)."""
    limits = limits or Limits()
    admission: Admission | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal admission
        admission = Admission(limits)
        watcher = asyncio.create_task(_follow_index(service, limits.reload_interval_s))
        try:
            yield
        finally:
            watcher.cancel()
            admission.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="p4r-search", version=__version__, lifespan=lifespan,
                  description="Persona recommendations: recommend, explain, item personas, index info.")

    async def run(fn, *args):
        try:
            return await admission.run(fn, *args)
        except (P4RError, Busy):
            raise
        except Exception as exc:
            raise _Failed(exc) from exc

    def check_key(authorization: Annotated[str | None, Header()] = None,
                  x_api_key: Annotated[str | None, Header()] = None) -> None:
        if api_key is None:
            return
        given = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise _Unauthorized()

    v1 = [Depends(check_key)]

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["service"])
    async def readiness() -> dict:
        """The index is open and the encoder loaded (both happen before the service listens)."""
        return {"status": "ready", "generation": service.index.current.generation}

    @app.post("/v1/recommend", tags=["recommend"], dependencies=v1)
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        """Items for a user (`user_id`, `history` and/or `text`), each with its best persona."""
        return await run(service.recommend, body)

    @app.post("/v1/explain", tags=["recommend"], dependencies=v1)
    async def explain(body: ExplainRequest) -> Explanation:
        """Why one item suits one user: its personas by similarity and the history behind the best one."""
        return await run(service.explain, body)

    @app.get("/v1/items/{item_id}", tags=["index"], dependencies=v1)
    async def item(item_id: Annotated[str, Path(max_length=500)]) -> ItemCard:
        """An item's personas, with their evidence reviews."""
        return await run(service.item, item_id)

    @app.get("/v1/index", tags=["index"], dependencies=v1)
    async def index_info() -> IndexInfo:
        """Model, persona-vector kind, counts and generation of the index being served."""
        return await run(service.info)

    @app.get("/v1/users", tags=["users"], dependencies=v1)
    async def users(limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[UserSummary]:
        """Users of the interactions file given at start, most interactions first."""
        return service.user_list(limit)

    @app.get("/v1/users/{user_id}", tags=["users"], dependencies=v1)
    async def user(user_id: str) -> UserHistory:
        return service.user(user_id)

    _handle_errors(app)
    _limit_body(app)
    mount_page(app)
    return app


async def _follow_index(service: Service, interval: float) -> None:
    """Check the index for a new generation every `interval` seconds, opening it on a worker thread."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            await loop.run_in_executor(None, service.index.reload_if_changed)
        except Exception:
            log.exception("reload check failed")


class _Unauthorized(Exception):
    pass


class _Failed(Exception):
    """An unexpected failure of a request's work; its cause says what."""


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "type": kind}, status_code=status, headers=headers)


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized):
        return _error(401, "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                      "unauthorized", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # without FastAPI's echo of the input: it may be a megabyte of text, or a NaN that JSON cannot carry
        errors = [{"loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return _error(503, str(exc), "busy", {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(P4RError)
    async def library_error(request: Request, exc: P4RError):
        if isinstance(exc, NotFoundError):
            return _error(404, str(exc), "not_found")
        if isinstance(exc, ConfigError | ChoiceError | InputError):  # a check the request model could not make
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]}, 422)
        if isinstance(exc, CapabilityError):  # the cluster cannot do this at all: retrying will not help
            return _error(501, str(exc), "not_supported")
        if isinstance(exc, IndexStateError):
            return _error(503, str(exc), "index_unavailable", {"Retry-After": "30"})
        return _error(503, str(exc), "backend_error", {"Retry-After": "5"})

    @app.exception_handler(_Failed)
    async def failed(request: Request, exc: _Failed):
        cause = exc.__cause__
        if type(cause).__module__.startswith(("elastic_transport", "elasticsearch", "opensearchpy", "urllib3")):
            return _error(503, f"the cluster did not answer: {type(cause).__name__}", "backend_unavailable",
                          {"Retry-After": "5"})
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=cause)
        return _error(500, f"internal error: {type(cause).__name__}", "internal")


def _limit_body(app: FastAPI) -> None:
    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return _error(413, f"the body is {int(length):,} bytes; at most {MAX_BODY:,}", "too_large")
        return await call_next(request)
