"""Online features: what Feast's online store holds for a card, read through Feast."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from services.api import paths  # noqa: F401  (registers {...:event_id})
from services.api.deps import State, Viewer
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.routes.decisions import CustomerId
from services.api.schemas import CardHistoryEvent, CustomerFeatures
from services.common import feast_layout as fl
from services.common.feast_store import FEATURE_SERVICE
from services.features.incremental import CUSTOMER_BLOCK
from services.features.online import request_row

router = APIRouter(prefix="/v1", tags=["features"])


def _read(store: Any, customer_id: str) -> dict[str, list[Any]]:
    """The card's ``card_history`` row, then its latest transaction's features through the
    ``fraud_model`` service (blocking: Feast's synchronous client)."""
    row: dict[str, list[Any]] = store.get_online_features(
        features=[f"{fl.CARD_VIEW}:{name}" for name in fl.CARD_FEATURES],
        entity_rows=[{fl.CUSTOMER_JOIN_KEY: customer_id}],
    ).to_dict()
    ids = row[fl.CARD_IDS][0]
    if not ids:
        return row
    times, cents = row[fl.CARD_TIMES][0], row[fl.CARD_CENTS][0]
    # the card's features need no terminal
    request = request_row(customer_id, "", ids[-1], int(times[-1]), cents[-1] / 100.0)
    service = store.get_feature_service(FEATURE_SERVICE)
    latest = store.get_online_features(features=service, entity_rows=[request]).to_dict()
    return {**row, **{name: latest[name] for name in CUSTOMER_BLOCK}}


@router.get(
    "/customers/{customer_id:event_id}/features",
    response_model=CustomerFeatures,
    responses=problems(404, 503, *AUTHED),
    summary="A card's online features, read through Feast",
)
async def customer_features(customer_id: CustomerId, state: State, _: Viewer) -> Any:
    """The card's history as Feast's online store holds it (the scorer writes it), and the
    card's features of its latest transaction computed by Feast's on-demand view with the
    scorer's own function."""
    import asyncio

    try:
        store = await asyncio.to_thread(state.feast)
    except Exception as error:
        raise Problem(
            503,
            "feature-store-unavailable",
            "Feast's feature store could not be opened",
            "the API logs why; try again",
        ) from error
    row = await asyncio.to_thread(_read, store, customer_id)
    ids = row[fl.CARD_IDS][0]
    if not ids:
        raise Problem(
            404,
            "customer-not-found",
            "No online features for this card",
            f"card {customer_id} has no transaction in the last 45 days",
        )
    times, cents, large = (row[n][0] for n in (fl.CARD_TIMES, fl.CARD_CENTS, fl.CARD_LARGE))
    newest = dt.datetime.fromtimestamp(max(times) / 1000, dt.UTC)
    return CustomerFeatures(
        customer_id=customer_id,
        event_timestamp=newest.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        history=[
            CardHistoryEvent(transaction_id=i, event_time_ms=int(t), amount=c / 100, large=g > 0)
            for i, t, c, g in zip(ids, times, cents, large, strict=True)
        ],
        latest={name: float(row[name][0]) for name in CUSTOMER_BLOCK},
    )
