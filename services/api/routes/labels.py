"""Labels: chargebacks and analyst verdicts, published to the ``labels`` topic."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import Analyst, State
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.schemas import LabelIn, LabelOut
from services.common.decision_store import REVIEW_QUEUE_KEY
from services.common.events import format_time

router = APIRouter(prefix="/v1", tags=["labels"])


def label_key(transaction_id: str, source: str) -> str:
    return f"label:{transaction_id}:{source}"


@router.post(
    "/labels",
    response_model=LabelOut,
    status_code=201,
    responses={
        200: {"model": LabelOut, "description": "The same label, already taken"},
        **problems(400, 404, 409, *AUTHED),
    },
    summary="Take a chargeback or an analyst verdict",
)
async def post_label(body: LabelIn, state: State, principal: Analyst) -> Any:
    """Idempotent by transaction and source: the same label again answers 200 with the stored
    one; a different verdict from the same source is a conflict. The label reaches terminal
    risk through the ``labels`` topic; an analyst's label also takes the transaction off the
    review queue."""
    decision = await state.decisions.get(body.transaction_id)
    if decision is None:
        raise Problem(
            404,
            "decision-not-found",
            "No decision for this transaction",
            "labels are taken for transactions the system decided",
        )
    reported = body.reported_at or dt.datetime.now(dt.UTC)
    label = {
        "transaction_id": body.transaction_id,
        "customer_id": decision.customer_id,
        "terminal_id": decision.terminal_id,
        "transaction_time": decision.event_time,
        "is_fraud": body.is_fraud,
        "reported_at": format_time(reported),
        "source": body.source,
    }
    key = label_key(body.transaction_id, body.source)
    value = orjson.dumps({**label, "by": principal.name})
    if not await state.redis.set(key, value, nx=True):
        existing = orjson.loads(await state.redis.get(key))
        if existing["is_fraud"] != body.is_fraud:
            raise Problem(
                409,
                "label-conflict",
                "A different label from this source exists",
                f"{body.source} already said is_fraud={existing['is_fraud']}",
            )
        existing.pop("by", None)
        return JSONResponse(LabelOut(**existing, created=False).model_dump(), status_code=200)
    try:
        await state.producer.send_and_wait(
            state.settings.topics.labels.name,
            key=body.transaction_id.encode(),
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
    if body.source == "analyst":
        await state.redis.zrem(REVIEW_QUEUE_KEY, body.transaction_id)
    return LabelOut(**label, created=True)
