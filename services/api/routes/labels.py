"""Labels: chargebacks and analyst verdicts, published to the ``labels`` topic."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import Analyst, ApiState, State
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.schemas import LabelIn, LabelOut
from services.common.decision_store import REVIEW_QUEUE_KEY, label_key
from services.common.events import InvalidEvent, format_time, parse_label

router = APIRouter(prefix="/v1", tags=["labels"])


@router.post(
    "/labels",
    response_model=LabelOut,
    status_code=201,
    responses={
        200: {"model": LabelOut, "description": "The same label, already taken"},
        **problems(400, 404, 409, 415, 422, *AUTHED),
    },
    summary="Take a chargeback or an analyst verdict",
)
async def post_label(body: LabelIn, state: State, principal: Analyst) -> Any:
    """Idempotent by transaction and source: the same label again answers 200 with the stored
    one; a different verdict from the same source is a conflict. The label reaches terminal
    risk through the ``labels`` topic; an analyst's label also takes the transaction off the
    review queue."""
    label, created = await take_label(
        state, body.transaction_id, body.is_fraud, body.source, body.reported_at, principal.name
    )
    if not created:
        return JSONResponse(LabelOut(**label, created=False).model_dump(), status_code=200)
    return LabelOut(**label, created=True)


async def take_label(
    state: ApiState,
    transaction_id: str,
    is_fraud: bool,
    source: str,
    reported_at: dt.datetime | None,
    by: str,
    comment: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Take a label (the API's ``POST /v1/labels`` and the console's verdict buttons).

    Returns:
        The label as published on ``labels``, and True when it was taken now (False: the
        same label from this source was taken before). ``by`` (the key's name) and
        ``comment`` are kept with the label in Redis, not published.

    Raises:
        Problem: 404 no decision for the transaction, 409 a different verdict from this
            source exists, 503 the ``labels`` topic did not accept it (nothing is kept).
    """
    decision = await state.decisions.get(transaction_id)
    if decision is None:
        raise Problem(
            404,
            "decision-not-found",
            "No decision for this transaction",
            "labels are taken for transactions the system decided",
        )
    reported = reported_at or dt.datetime.now(dt.UTC)
    try:
        reported_text = format_time(reported)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the last instant in UTC
        raise Problem(
            422,
            "invalid-label",
            "The label breaks the label contract",
            "reported_at is implausibly far off (outside the years 1..9999 in UTC)",
        ) from None
    label = {
        "transaction_id": transaction_id,
        "customer_id": decision.customer_id,
        "terminal_id": decision.terminal_id,
        "transaction_time": decision.event_time,
        "is_fraud": is_fraud,
        "reported_at": reported_text,
        "source": source,
    }
    try:  # what the recording worker would drop is refused here, not accepted and lost
        parsed = parse_label(orjson.dumps(label))
    except InvalidEvent as error:
        raise Problem(
            422, "invalid-label", "The label breaks the label contract", error.detail
        ) from error
    if parsed.reported_at < parsed.transaction_time:
        raise Problem(
            422,
            "invalid-label",
            "The label breaks the label contract",
            f"reported_at {label['reported_at']} is before the transaction ({decision.event_time})",
        )
    key = label_key(transaction_id, source)
    kept = {**label, "by": by} if comment is None else {**label, "by": by, "comment": comment}
    if not await state.redis.set(key, orjson.dumps(kept), nx=True):
        existing = orjson.loads(await state.redis.get(key))
        if existing["is_fraud"] != is_fraud:
            raise Problem(
                409,
                "label-conflict",
                "A different label from this source exists",
                f"{source} already said is_fraud={orjson.dumps(existing['is_fraud']).decode()}",
            )
        return {k: v for k, v in existing.items() if k in label}, False
    try:
        await state.producer.send_and_wait(
            state.settings.topics.labels.name,
            key=transaction_id.encode(),
            value=orjson.dumps(label),
        )
    except Exception as error:
        await state.redis.delete(key)  # not taken: a retry must be able to take it
        raise Problem(
            503,
            "unavailable",
            "A dependency is unavailable",
            "the labels topic (Kafka) did not accept the label; retry",
        ) from error
    if source == "analyst":
        await state.redis.zrem(REVIEW_QUEUE_KEY, transaction_id)
    return label, True
