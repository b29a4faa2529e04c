"""A transaction as the feature code needs it (``TransactionLike``), for tests of that code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tx:
    transaction_id: str
    customer_id: str
    terminal_id: str
    time_ms: int
    amount: float
