"""The decision policy: thresholds and allow/block lists, versioned with an audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError

from services.api.deps import Admin, State, Viewer
from services.api.problems import Problem, validation_messages
from services.api.routes import AUTHED, problems
from services.api.schemas import AuditEntry, PolicyIn, PolicyOut
from services.common.policy import Policy

router = APIRouter(prefix="/v1/policy", tags=["policy"])

HISTORY_OFFSET_MAX = 10**9
"""Redis refuses list indexes beyond 64 bits (a 500 before this bound); a billion changes."""
HISTORY_PAGE_MAX = 200
"""Audit entries per page of ``GET /v1/policy/history`` at most."""


def _out(policy: Policy) -> PolicyOut:
    data = policy.model_dump()
    for key in ("allow_customers", "block_customers", "allow_terminals", "block_terminals"):
        data[key] = sorted(data[key])
    return PolicyOut(**data)


@router.get(
    "",
    response_model=PolicyOut,
    responses=problems(*AUTHED),
    summary="The current policy (version 0: the model's thresholds, empty lists)",
)
def get_policy(state: State, _: Viewer) -> PolicyOut:
    return _out(state.policies.current())


@router.put(
    "",
    response_model=PolicyOut,
    responses=problems(400, 415, *AUTHED),
    summary="Replace the policy; stored as the next version, audited",
)
def put_policy(body: PolicyIn, state: State, principal: Admin) -> PolicyOut:
    """Scorers apply the new version within about a second. A policy equal to the current
    one is not stored again: the answer is the current policy, its version unchanged."""
    try:
        policy = Policy(**body.model_dump())
    except ValidationError as error:
        raise Problem(
            422,
            "invalid-policy",
            "The policy is not consistent",
            validation_messages(error),
        ) from error
    if (problem := state.review_band_problem(policy)) is not None:
        raise Problem(422, "invalid-policy", "The policy is not consistent", problem)
    return _out(state.policies.replace(policy, actor=principal.name))


@router.get(
    "/history",
    response_model=list[AuditEntry],
    responses=problems(*AUTHED),
    summary="Who changed the policy, when and what, newest first, a page at a time",
)
def policy_history(
    state: State,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=HISTORY_PAGE_MAX, description="entries per page")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=HISTORY_OFFSET_MAX, description="newest entries to skip")
    ] = 0,
) -> list[AuditEntry]:
    """A page with fewer than ``limit`` entries is the last one. Each entry's ``changes``
    holds the changed fields whole (a list of up to 10,000 ids among them)."""
    return [AuditEntry(**entry) for entry in state.policies.history(offset, limit)]
