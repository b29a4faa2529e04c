"""Errors as RFC 9457 problem details (``application/problem+json``) with stable types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import FraudError, plain_message, redis_away
from services.common.events import mask_card_numbers

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"
"""Problem types are relative URIs (RFC 9457 section 3.1.1), one per kind of error."""


class Problem(FraudError):
    """An error the API reports as a problem document.

    Attributes:
        status: HTTP status.
        kind: stable type name, appended to ``/problems/``.
        title: short, fixed per kind.
        detail: this occurrence, for humans.
        retryable: True for 503 (a dependency is away; the same request may succeed later).
    """

    def __init__(self, status: int, kind: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.retryable = status == 503
        self.status, self.kind, self.title, self.detail, self.extra = (
            status,
            kind,
            title,
            detail,
            extra,
        )


STATUS_KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "A valid API key is required"),
    403: ("forbidden", "The API key's role does not allow this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "The request body is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "The request is not valid"),
    503: ("unavailable", "A dependency is unavailable"),
}


def problem_response(
    request: Request, status: int, kind: str, title: str, detail: str = "", **extra: Any
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + kind,
        "title": title,
        "status": status,
        "instance": mask_card_numbers(request.url.path)[:2000],  # may carry a card number
        "request_id": getattr(request.state, "request_id", None),
    }
    if detail:
        body["detail"] = mask_card_numbers(detail)
    body.update(extra)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc.status, exc.kind, exc.title, exc.detail, **exc.extra)


UNPARSABLE_BODIES = {
    UnicodeDecodeError: "the body is not UTF-8 text (JSON exchanged between systems is UTF-8,"
    " RFC 8259)",
    RecursionError: "the JSON body is nested too deeply",
}
"""Why FastAPI could not parse a JSON body, by the error under its 400 "There was an error
parsing the body": such a body is answered 422, as every other malformed body is."""


async def handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = type(exc.__cause__)
    if exc.status_code == 400 and cause in UNPARSABLE_BODIES:
        kind, title = STATUS_KINDS[422]
        return problem_response(request, 422, kind, title, UNPARSABLE_BODIES[cause])
    kind, title = STATUS_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else ""
    response = problem_response(request, exc.status_code, kind, title, detail)
    if exc.status_code == 405:  # RFC 9110 15.5.6: a 405 says which methods the path takes
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods some route takes at the request's path (Starlette's own ``Allow`` names only
    the first such route's: ``GET`` for ``/v1/policy``, which ``PUT`` takes too)."""
    from starlette.routing import Match

    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message for a person (:func:`plain_message`), card numbers masked."""
    return mask_card_numbers(plain_message(error))


def validation_messages(error: ValidationError) -> str:
    """Every message of a model's validation error, ``; ``-separated (for a problem's
    detail or a form's notice)."""
    return "; ".join(error_message(e) for e in error.errors())


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # the input is never echoed, and a field name or message may be a card number: masked
    raw = exc.errors()
    errors = [
        {
            "loc": [mask_card_numbers(str(p)) for p in e.get("loc", ())],
            "msg": error_message(e),
        }
        for e in raw
    ]
    where = [_where(e["loc"], r.get("type")) for e, r in zip(errors, raw, strict=True)]
    return problem_response(
        request,
        422,
        "validation-error",
        "The request is not valid",
        "; ".join(f"{at}: {e['msg']}" for at, e in zip(where, errors, strict=True))[:1000],
        errors=errors[:20],
    )


def _where(loc: Sequence[str], kind: Any) -> str:
    """Where an error is, for the detail: ``body.items.0.field``; a body that is not JSON is
    located by character (pydantic's ``loc`` then holds the offset, which reads as a field)."""
    if kind == "json_invalid" and len(loc) == 2 and loc[0] == "body":
        return f"body, at character {loc[1]}"
    return ".".join(loc)


UNAVAILABLE = redis_away()
"""Redis errors that mean the store is (for now) away: 503, retry later."""


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger("fraud.api").exception(  # a path may carry a card number, or a megabyte
        "unhandled_error path=%s", mask_card_numbers(request.url.path)[:300]
    )
    if isinstance(exc, UNAVAILABLE):  # not any Redis error: a refused command is a bug
        return problem_response(
            request,
            503,
            "unavailable",
            "A dependency is unavailable",
            "the decision store (Redis) did not answer; retry later",
        )
    return problem_response(request, 500, "internal-error", "Internal error")


def problem_schema() -> dict[str, Any]:
    """OpenAPI description of a problem response."""
    return {
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        "description": "Problem details (RFC 9457)",
    }
