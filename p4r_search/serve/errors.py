"""Every error the service answers: one JSON shape per kind, the handlers that make them, and their
documentation in the OpenAPI document (`responses(...)`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..clusters.capabilities import CapabilityError
from ..errors import ChoiceError, ConfigError, ConflictError, IndexStateError, InputError, NotFoundError, P4RError
from .limits import Busy

log = logging.getLogger("p4r.serve")


class ErrorBody(BaseModel):
    """Any error but an invalid request."""

    detail: str = Field(description="What went wrong, in words.")
    type: str = Field(description="unauthorized, not_found, too_large, busy, index_unavailable, backend_error, "
                                  "backend_unavailable, not_supported, conflict, method_not_allowed, bad_request or internal.")


class Issue(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, then the field's path.")
    msg: str
    type: str


class InvalidBody(BaseModel):
    """An invalid request: each issue with its field and the reason."""

    detail: list[Issue]


_WHY = {
    400: "The body could not be read.",
    401: "No API key, or a wrong one.",
    404: "The user or item is not known (or none of the history is in the index).",
    409: "An event_id the store has with other content; nothing of the batch was written.",
    413: "The body is larger than 4 MiB (counted as it arrives, chunked or not).",
    422: "The request is invalid: each issue with its field and the reason.",
    501: "The cluster cannot do this at all.",
    503: "Busy (every worker busy and the queue full, or no answer in time) or the index or cluster is "
         "unavailable; `Retry-After` says when to try again.",
}


def responses(*statuses: int) -> dict[int | str, dict]:
    """The `responses=` of a route answering these error statuses, each with its body model."""
    return {status: {"model": InvalidBody if status == 422 else ErrorBody, "description": _WHY[status]}
            for status in statuses}


class Unauthorized(Exception):
    pass


class Failed(Exception):
    """An unexpected failure of a request's work; its cause says what."""


def error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "type": kind}, status_code=status, headers=headers)


def invalid(message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}, 422)


_HTTP_KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def handle_errors(app: FastAPI) -> None:
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Busy, _busy)
    app.add_exception_handler(P4RError, _library_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Failed, _failed)


async def _unauthorized(request: Request, exc: Unauthorized):
    return error(401, "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                 "unauthorized", {"WWW-Authenticate": "Bearer"})


async def _invalid_request(request: Request, exc: RequestValidationError):
    # without FastAPI's echo of the input: it may be a megabyte of text, or a NaN that JSON cannot carry
    errors = [{"loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
              for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _busy(request: Request, exc: Busy):
    return error(503, str(exc), "busy", {"Retry-After": str(exc.retry_after)})


async def _library_error(request: Request, exc: P4RError):
    if isinstance(exc, NotFoundError):
        return error(404, str(exc), "not_found")
    if isinstance(exc, ConflictError):
        return error(409, str(exc), "conflict")
    if isinstance(exc, ConfigError | ChoiceError | InputError):  # a check the request model could not make
        return invalid(str(exc))
    if isinstance(exc, CapabilityError):  # the cluster cannot do this at all: retrying will not help
        return error(501, str(exc), "not_supported")
    if isinstance(exc, IndexStateError):
        return error(503, str(exc), "index_unavailable", {"Retry-After": "30"})
    return error(503, str(exc), "backend_error", {"Retry-After": "5"})


async def _http_error(request: Request, exc: HTTPException):
    """Starlette's own errors (an unknown path, a method the path lacks) in the service's shape."""
    return error(exc.status_code, str(exc.detail), _HTTP_KINDS.get(exc.status_code, "http_error"), exc.headers)


async def _failed(request: Request, exc: Failed):
    cause = exc.__cause__
    if type(cause).__module__.startswith(("elastic_transport", "elasticsearch", "opensearchpy", "urllib3")):
        return error(503, f"the cluster did not answer: {type(cause).__name__}", "backend_unavailable",
                     {"Retry-After": "5"})
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=cause)
    return error(500, f"internal error: {type(cause).__name__}", "internal")
