"""The HTTP app: JSON endpoints over `Service`, the page, and the rules of a well-behaved service.

- Invalid requests: 422 with the field and the reason (pydantic's, or the library's check in words).
- Unknown users or items: 404. A busy service (every worker busy and the queue full, or no answer within
  the request timeout) or a broken backend (an index under repair, a cluster that does not answer): 503
  with Retry-After, never a hang.
- With an API key, every /v1 endpoint needs it (`Authorization: Bearer KEY`, the scheme in any case, or
  `X-API-Key: KEY`); the page and /health, /ready do not. The key is compared in constant time and never
  logged. Every status an endpoint can answer is in the OpenAPI document, with its body (errors.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from .. import __version__
from ..errors import P4RError
from ..events import EventBatchResult
from ..features import FeatureRow
from ..models import ItemCard
from ..recommend import Explanation
from .errors import Failed, Unauthorized, handle_errors, responses
from .limits import MAX_BODY, Admission, BodyLimit, Busy, Limits
from .page import mount_page
from .schemas import (
    EventsRequest,
    ExplainRequest,
    FeaturesRequest,
    IndexInfo,
    RecommendRequest,
    RecommendResponse,
    UserHistory,
    UserSummary,
)
from .service import Service

__all__ = ["MAX_BODY", "Limits", "create_app"]
log = logging.getLogger("p4r.serve")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service's API key.")
_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`, the service's API key.")


def given_key(request: Request) -> str | None:
    """The key of `X-API-Key`, else of `Authorization: Bearer KEY` (the scheme in any case, RFC 7235)."""
    if key := request.headers.get("x-api-key", "").strip():
        return key
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


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
            raise Failed(exc) from exc

    def check_key(request: Request, _key: Annotated[str | None, Security(_API_KEY)] = None,
                  _bearer: Annotated[object, Security(_BEARER)] = None) -> None:
        given = given_key(request)  # parsed here: HTTPBearer keeps a stray space of `Bearer  KEY`
        if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise Unauthorized()

    v1 = [Depends(check_key)] if api_key is not None else []
    auth = (401,) if api_key is not None else ()

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["service"])
    async def readiness() -> dict:
        """The index is open and the encoder loaded (both happen before the service listens)."""
        return {"status": "ready", "generation": service.index.current.generation}

    posted = responses(400, *auth, 404, 413, 422, 501, 503)

    @app.post("/v1/recommend", tags=["recommend"], dependencies=v1, responses=posted)
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        """Items for a user (`user_id`, `history` and/or `text`), each with its best persona."""
        return await run(service.recommend, body)

    @app.post("/v1/explain", tags=["recommend"], dependencies=v1, responses=posted)
    async def explain(body: ExplainRequest) -> Explanation:
        """Why one item suits one user: its personas by similarity and the history behind the best one."""
        return await run(service.explain, body)

    @app.post("/v1/features", tags=["recommend"], dependencies=v1, responses=posted)
    async def features(body: FeaturesRequest) -> list[FeatureRow]:
        """p4r's features of each candidate for this user (docs/ltr.md), one row each, for a team's ranker."""
        return await run(service.features, body)

    @app.get("/v1/items/{item_id}", tags=["index"], dependencies=v1, responses=responses(*auth, 404, 422, 503))
    async def item(item_id: Annotated[str, Path(min_length=1, max_length=500)]) -> ItemCard:
        """An item's personas, with their evidence reviews."""
        return await run(service.item, item_id)

    @app.get("/v1/index", tags=["index"], dependencies=v1, responses=responses(*auth, 503))
    async def index_info() -> IndexInfo:
        """Model, persona-vector kind, counts and generation of the index being served."""
        return await run(service.info)

    @app.get("/v1/users", tags=["users"], dependencies=v1, responses=responses(*auth, 422, 503))
    async def users(limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[UserSummary]:
        """Users of the history store (start-up files and events), most interactions first."""
        return await run(service.user_list, limit)

    @app.get("/v1/users/{user_id}", tags=["users"], dependencies=v1, responses=responses(*auth, 404, 422, 503))
    async def user(user_id: Annotated[str, Path(min_length=1, max_length=500)]) -> UserHistory:
        """A user's history (item ids, oldest first) as of now: the start-up files and every event since."""
        return await run(service.user, user_id)

    @app.post("/v1/events", tags=["users"], dependencies=v1, responses=responses(400, *auth, 409, 413, 422, 503))
    async def events(body: EventsRequest) -> EventBatchResult:
        """Interactions and reviews, durable when this answers 200: the next request for the user sees them.
        Idempotent by `event_id`: a retry (after a timeout, say) changes nothing; the same id with other
        content is 409 and nothing of the batch is written."""
        return await run(service.add_events, body)

    handle_errors(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
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
