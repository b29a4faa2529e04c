"""Features of one transaction at a time, from one customer's and one terminal's recent events.

The scorer keeps a :class:`CustomerHistory` per card and a :class:`TerminalHistory` per
terminal (persisted in Redis by its adapter) and calls the same window functions as the batch
path, so a transaction gets the same values online as offline. Both histories are idempotent:
observing a transaction or label twice (a redelivery after a crash) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.features import definitions as d
from services.features.windows import (
    Int64Array,
    delayed_window,
    prefix_sums,
    to_cents,
    trailing_sum,
    trailing_window,
)

REPLAY_SLACK_MS = 15 * d.MS_PER_DAY
"""Extra history kept beyond the longest window, so that a stream can be replayed from up to
15 days before its newest event and still find every event its windows need."""
CUSTOMER_HORIZON_MS = max(d.WINDOWS_DAYS) * d.MS_PER_DAY + REPLAY_SLACK_MS
"""How far back (before its newest event) a customer history keeps events."""
TERMINAL_HORIZON_MS = (max(d.WINDOWS_DAYS) + d.LABEL_DELAY_DAYS) * d.MS_PER_DAY + REPLAY_SLACK_MS


def _empty() -> Int64Array:
    return np.zeros(0, dtype=np.int64)


@dataclass
class CustomerHistory:
    """One card's recent transactions (:data:`CUSTOMER_HORIZON_MS`), sorted by event time
    (ties in arrival order).

    Attributes:
        times_ms: event times, epoch milliseconds, shape (n,).
        cents: amounts in minor units, shape (n,).
        transaction_ids: shape (n,), for idempotence.
        large: 1 where the transaction was unusually large at its time, shape (n,).
    """

    times_ms: Int64Array = field(default_factory=_empty)
    cents: Int64Array = field(default_factory=_empty)
    transaction_ids: list[str] = field(default_factory=list)
    large: Int64Array = field(default_factory=_empty)

    def observe(self, transaction_id: str, time_ms: int, amount: float) -> dict[str, float]:
        """Add a transaction (unless already there) and return its customer features.

        Returns:
            ``CUSTOMER_ID_NB_TX_{1,7,30}DAY_WINDOW`` and ``CUSTOMER_ID_AVG_AMOUNT_...``: the
            window ``(t - n days, t]`` including this transaction; and
            ``CUSTOMER_ID_NB_LARGE_TX_7DAY_WINDOW``.
        """
        from services.features.derived import large_amount_flags

        try:
            position = self.transaction_ids.index(transaction_id)
            new = False
        except ValueError:
            position = int(np.searchsorted(self.times_ms, time_ms, side="right"))
            self.times_ms = np.insert(self.times_ms, position, time_ms)
            self.cents = np.insert(self.cents, position, to_cents(amount))
            self.transaction_ids.insert(position, transaction_id)
            new = True
        prefix = prefix_sums(self.cents)
        at = np.array([position], dtype=np.int64)
        out: dict[str, float] = {}
        for days in d.WINDOWS_DAYS:
            counts, means = trailing_window(self.times_ms, prefix, at, days)
            out[d.customer_count(days)] = float(counts[0])
            out[d.customer_mean(days)] = float(means[0])
        if new:
            mean_30 = np.array([out[d.customer_mean(max(d.WINDOWS_DAYS))]])
            flag = large_amount_flags(np.array([float(amount)]), mean_30)[0]
            self.large = np.insert(self.large, position, flag)
        large = trailing_sum(self.times_ms, prefix_sums(self.large), at, d.LARGE_AMOUNT_WINDOW_DAYS)
        out[d.LARGE_AMOUNT_COUNT] = float(large[0])
        return out

    def prune(self, now_ms: int) -> None:
        """Forget events older than the horizon before ``now_ms``."""
        keep = int(np.searchsorted(self.times_ms, now_ms - CUSTOMER_HORIZON_MS, side="left"))
        if keep:
            self.times_ms, self.cents = self.times_ms[keep:], self.cents[keep:]
            self.large = self.large[keep:]
            del self.transaction_ids[:keep]


@dataclass
class TerminalHistory:
    """One terminal's recent transactions (:data:`TERMINAL_HORIZON_MS`) and the fraud labels
    received for them.

    Attributes:
        times_ms: event times, sorted, shape (n,).
        transaction_ids: shape (n,).
        frauds: 1 where a fraud label was received for the transaction, shape (n,).
    """

    times_ms: Int64Array = field(default_factory=_empty)
    transaction_ids: list[str] = field(default_factory=list)
    frauds: Int64Array = field(default_factory=_empty)

    def observe_transaction(self, transaction_id: str, time_ms: int) -> int:
        """Record a transaction on this terminal (no-op if known); return its index."""
        try:
            return self.transaction_ids.index(transaction_id)
        except ValueError:
            position = int(np.searchsorted(self.times_ms, time_ms, side="right"))
            self.times_ms = np.insert(self.times_ms, position, time_ms)
            self.frauds = np.insert(self.frauds, position, 0)
            self.transaction_ids.insert(position, transaction_id)
            return position

    def observe_label(self, transaction_id: str, transaction_time_ms: int, is_fraud: bool) -> None:
        """Record a label; the latest label of a transaction wins.

        A label may arrive before the scorer saw its transaction (the label carries the
        transaction's time), so it records the transaction too.
        """
        position = self.observe_transaction(transaction_id, transaction_time_ms)
        self.frauds[position] = int(is_fraud)

    def features_at(self, time_ms: int) -> dict[str, float]:
        """``TERMINAL_ID_NB_TX_{n}DAY_WINDOW`` and ``TERMINAL_ID_RISK_{n}DAY_WINDOW`` at ``t``:
        transactions in ``(t - 7 - n days, t - 7 days]`` and the share labelled fraud."""
        prefix = prefix_sums(self.frauds)
        at = np.array([time_ms], dtype=np.int64)
        out: dict[str, float] = {}
        for days in d.WINDOWS_DAYS:
            counts, risk = delayed_window(self.times_ms, prefix, at, days, d.LABEL_DELAY_DAYS)
            out[d.terminal_count(days)] = float(counts[0])
            out[d.terminal_risk(days)] = float(risk[0])
        return out

    def prune(self, now_ms: int) -> None:
        """Forget events older than the horizon before ``now_ms``."""
        keep = int(np.searchsorted(self.times_ms, now_ms - TERMINAL_HORIZON_MS, side="left"))
        if keep:
            self.times_ms, self.frauds = self.times_ms[keep:], self.frauds[keep:]
            del self.transaction_ids[:keep]


def transaction_features(
    time_ms: int, amount: float, customer: dict[str, float], terminal: dict[str, float]
) -> dict[str, float]:
    """All features of one transaction, from its customer and terminal features."""
    from services.features.derived import amount_ratios, calendar_flags

    weekend, night = calendar_flags(np.array([time_ms], dtype=np.int64))
    out = {d.AMOUNT: float(amount), d.WEEKEND: float(weekend[0]), d.NIGHT: float(night[0])}
    out.update(customer)
    out.update(terminal)
    columns = {k: np.array([v]) for k, v in customer.items()}
    ratios = amount_ratios(np.array([float(amount)]), columns)
    out.update({k: float(v[0]) for k, v in ratios.items()})
    return {name: out[name] for name in d.ALL_FEATURES}
