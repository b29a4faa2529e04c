"""The model inputs of transactions from entity-state rows: Feast's on-demand feature view.

``feature_store/`` registers :func:`transaction_features` as the on-demand feature view
``transaction_features`` (request data: the transaction; inputs: its card's
``card_history`` row and its terminal's ``terminal_history`` row). It calls
:func:`services.features.incremental.batch_features`, the function the scorer calls, so any
Feast client gets the features the scorer uses: for a transaction already in its card's
history, the values it was decided with (what arrived before it); for a new one, the values
the scorer would compute. Knows nothing of Redis or Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.features.definitions import ALL_FEATURES
from services.features.incremental import CustomerHistory, TerminalHistory, batch_features

# Feature names of the entity-state views; unique across both, since the on-demand view gets
# its inputs by feature name (Feast's layout and views: services.common.feast_layout)
CARD_TIMES, CARD_CENTS, CARD_LARGE, CARD_IDS = (
    "card_event_times_ms",
    "card_amounts_cents",
    "card_large_flags",
    "card_transaction_ids",
)
TERMINAL_TIMES, TERMINAL_FRAUDS, TERMINAL_KEYS = (
    "terminal_event_times_ms",
    "terminal_fraud_flags",
    "terminal_transaction_keys",
)


def request_row(
    customer_id: str, terminal_id: str, transaction_id: str, time_ms: int, amount: float
) -> dict[str, Any]:
    """The entity row of one transaction for Feast's ``get_online_features`` of the
    ``fraud_model`` feature service: the join keys and the request data."""
    return {
        "customer_id": customer_id,
        "terminal_id": terminal_id,
        "transaction_id": transaction_id,
        "event_time_ms": int(time_ms),
        "amount": float(amount),
    }


@dataclass(frozen=True)
class _Request:
    transaction_id: str
    customer_id: str
    terminal_id: str
    time_ms: int
    amount: float


def _ints(values: Sequence[float] | None) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=np.float64).astype(np.int64)


def transaction_features(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    """The :data:`ALL_FEATURES` of each request row (Feast's python-mode on-demand view).

    Args:
        inputs: column name -> one value per row: the request fields ``transaction_id``,
            ``event_time_ms`` (epoch ms) and ``amount`` (currency units), and the entity
            rows' arrays (``card_*``, ``terminal_*``; None for an entity with no row).

    Returns:
        Feature name -> one float per row.
    """
    rows = len(inputs["transaction_id"])
    out: dict[str, list[float]] = {name: [] for name in ALL_FEATURES}
    for i in range(rows):
        ids = inputs[CARD_IDS][i]
        card = CustomerHistory(
            times_ms=_ints(inputs[CARD_TIMES][i]),
            cents=_ints(inputs[CARD_CENTS][i]),
            transaction_ids=list(ids) if ids is not None else [],
            large=_ints(inputs[CARD_LARGE][i]),
        )
        times = _ints(inputs[TERMINAL_TIMES][i])
        site = TerminalHistory(
            times_ms=times,
            keys=np.zeros(times.size, dtype=np.int64),  # not needed for features
            frauds=_ints(inputs[TERMINAL_FRAUDS][i]),
        )
        tx = _Request(
            str(inputs["transaction_id"][i]),
            "card",
            "terminal",
            int(inputs["event_time_ms"][i]),
            float(inputs["amount"][i]),
        )
        values = batch_features([tx], {"card": card}, {"terminal": site})[0]
        for name, value in zip(ALL_FEATURES, values.tolist(), strict=True):
            out[name].append(value)
    return out


__all__ = ["request_row", "transaction_features"]
