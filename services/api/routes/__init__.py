"""Routes of the admin API, one module per resource."""

from __future__ import annotations

from typing import Any

from services.api.schemas import ProblemDetails

_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid API key",
    403: "The key's role does not allow this",
    404: "Not found",
    409: "Conflict with the current state",
    415: "The body is not application/json",
    422: "The request is not valid",
    503: "A dependency (Redis, Kafka, the feature store) is unavailable",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents (application/problem+json)."""
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {
        status: {
            "model": ProblemDetails,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }


AUTHED = (401, 403, 422, 503)
