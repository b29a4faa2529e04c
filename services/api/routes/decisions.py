"""Decisions: one by transaction, a card's history, the review queue, explanations."""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, AwareDatetime

from models import inference
from models.registry import RegistryError
from services.api import paths  # noqa: F401  (registers {...:event_id})
from services.api.deps import ApiState, State, Viewer
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.schemas import Decision, DecisionPage, Explanation, event_id
from services.common.decision import Decision as StoredDecision
from services.common.decision import RuleHit, decode
from services.common.decision_store import REVIEW_QUEUE_KEY, customer_index_key, decision_key

router = APIRouter(prefix="/v1", tags=["decisions"])

TransactionId = Annotated[str, Path(min_length=1, max_length=64), AfterValidator(event_id)]
CustomerId = Annotated[str, Path(min_length=1, max_length=64), AfterValidator(event_id)]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the last page")]


def decision_not_found(transaction_id: str) -> Problem:
    """The 404 of a transaction without a decision."""
    return Problem(
        404,
        "decision-not-found",
        "No decision for this transaction",
        f"transaction {transaction_id} has no decision",
    )


def _encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(f"{int(score)}:{member}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split(":", 1)
        return int(score), member
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(
            400,
            "bad-cursor",
            "The cursor is not valid",
            "pass next_cursor from the previous page unchanged",
        ) from error


def _ms(moment: AwareDatetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


async def _page(
    state: Any,
    key: str,
    newest_first: bool,
    lo: int | None,
    hi: int | None,
    limit: int,
    cursor: str | None,
) -> DecisionPage:
    """One page of a sorted-set index, ties broken by member, resumed after ``cursor``."""
    redis = state.redis
    after: tuple[int, str] | None = _decode_cursor(cursor) if cursor else None
    if after is not None:
        if newest_first:
            hi = after[0]
        else:
            lo = after[0]
    low = "-inf" if lo is None else str(lo)
    high = "+inf" if hi is None else str(hi)
    ties = await redis.zcount(key, after[0], after[0]) if after else 0
    if newest_first:
        rows = await redis.zrevrangebyscore(
            key, high, low, start=0, num=limit + ties + 1, withscores=True
        )
    else:
        rows = await redis.zrangebyscore(
            key, low, high, start=0, num=limit + ties + 1, withscores=True
        )
    members = [(m.decode(), s) for m, s in rows]
    if after is not None:  # drop what the previous page already returned

        def seen(member: str, score: float) -> bool:
            if int(score) != after[0]:
                return False
            return member >= after[1] if newest_first else member <= after[1]

        members = [(m, s) for m, s in members if not seen(m, s)]
    page, more = members[:limit], len(members) > limit
    decisions = await state.decisions.get_many([m for m, _ in page])
    items = [Decision.model_validate(d.to_dict()) for d in decisions if d is not None]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0]) if more and page else None
    return DecisionPage(items=items, next_cursor=next_cursor)


@router.get(
    "/decisions/{transaction_id:event_id}/explanation",
    response_model=Explanation,
    responses=problems(404, 409, *AUTHED),
    summary="Exact feature contributions",
)
def explain(transaction_id: TransactionId, state: State, _: Viewer) -> Explanation:
    """XGBoost's TreeSHAP (``pred_contribs``) on the feature values stored with the decision,
    with the model version that made it. Contributions are in log-odds; they and the bias sum
    to the margin, whose logistic is the score."""
    raw = state.redis_sync.get(decision_key(transaction_id))
    if raw is None:
        raise decision_not_found(transaction_id)
    return explanation_of(state, decode(raw))


@router.get(
    "/decisions/{transaction_id:event_id}",  # ids may hold "/" (after /explanation)
    response_model=Decision,
    responses=problems(404, *AUTHED),
    summary="A transaction's decision",
)
async def get_decision(transaction_id: TransactionId, state: State, _: Viewer) -> Any:
    decision = await state.decisions.get(transaction_id)
    if decision is None:
        raise decision_not_found(transaction_id)
    return decision.to_dict()


@router.get(
    "/customers/{customer_id:event_id}/decisions",
    response_model=DecisionPage,
    responses=problems(400, *AUTHED),
    summary="A card's decisions, newest first",
)
async def customer_decisions(
    customer_id: CustomerId,
    state: State,
    _: Viewer,
    since: Annotated[AwareDatetime | None, Query(description="event time from (inclusive)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="event time to (exclusive)")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DecisionPage:
    hi = _ms(until)
    return await _page(
        state,
        customer_index_key(customer_id),
        True,
        _ms(since),
        None if hi is None else hi - 1,
        limit,
        cursor,
    )


@router.get(
    "/decisions",
    response_model=DecisionPage,
    responses=problems(400, *AUTHED),
    summary="The review queue, oldest first",
)
async def review_queue(
    state: State,
    _: Viewer,
    outcome: Annotated[Literal["review"], Query(description="only the review queue is indexed")],
    since: Annotated[AwareDatetime | None, Query(description="decided at or after")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DecisionPage:
    return await _page(state, REVIEW_QUEUE_KEY, False, _ms(since), None, limit, cursor)


def explanation_of(state: ApiState, decision: StoredDecision) -> Explanation:
    """The TreeSHAP explanation of a stored decision (blocking: XGBoost), largest first.

    Raises:
        Problem: 409 when the decision has no model score (degraded mode) or its model
            cannot be loaded.
    """
    version, features = decision.model_version, decision.features
    if version is None or features is None or decision.score is None:
        raise Problem(
            409,
            "not-explainable",
            "This decision has no model score",
            "it was decided by rules alone (degraded mode)",
        )
    try:
        model = state.model(version)
    except RegistryError as error:
        raise Problem(
            409, "model-unavailable", "The model that decided is not loadable", str(error)
        ) from error
    names = model.feature_names
    row = np.array([[features[n] for n in names]], dtype=np.float64)
    contribs = inference.contributions(model.booster, row, names)[0]
    margin = float(inference.margin(model.booster, row)[0])
    order = np.argsort(-np.abs(contribs[:-1]))
    return Explanation(
        transaction_id=decision.transaction_id,
        model_version=version,
        score=1.0 / (1.0 + math.exp(-margin)),
        margin=margin,
        bias=float(contribs[-1]),
        contributions=[
            {"feature": names[j], "value": float(row[0, j]), "contribution": float(contribs[j])}
            for j in order
        ],
        rules=[r.rule for r in decision.reasons if isinstance(r, RuleHit)],
    )
