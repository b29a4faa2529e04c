"""Per-transaction features that need no history: calendar flags and amount ratios.

Vectorised over arrays; the scorer passes arrays of one element or one micro-batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from services.features.definitions import (
    AMOUNT_TO_CUSTOMER_MEAN,
    LARGE_AMOUNT_FACTOR,
    MS_PER_DAY,
    NIGHT_LAST_HOUR,
    customer_mean,
)

_MS_PER_HOUR = 3_600_000
_THURSDAY = 3  # 1970-01-01, with Monday = 0


def calendar_flags(
    times_ms: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(weekend, night) flags, 0 or 1, of event times in epoch milliseconds (UTC).

    Weekend: Saturday or Sunday. Night: hour <= 6. Source: handbook chapter 3.4.
    """
    weekday = (times_ms // MS_PER_DAY + _THURSDAY) % 7
    hour = (times_ms // _MS_PER_HOUR) % 24
    return (weekday >= 5).astype(np.int64), (hour <= NIGHT_LAST_HOUR).astype(np.int64)


def large_amount_flags(
    amounts: npt.NDArray[np.float64], mean_30_days: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """1 where the amount exceeds LARGE_AMOUNT_FACTOR times the card's 30-day mean."""
    return (amounts > LARGE_AMOUNT_FACTOR * mean_30_days).astype(np.int64)


def amount_ratios(
    amounts: npt.NDArray[np.float64], columns: Mapping[str, npt.NDArray[np.float64]]
) -> dict[str, npt.NDArray[np.float64]]:
    """The amount divided by the customer's mean amount over each window (current included).

    The mean includes the transaction itself, so it is positive unless every amount in the
    window is 0; the ratio is then defined as 1.
    """
    out = {}
    for days, name in AMOUNT_TO_CUSTOMER_MEAN.items():
        mean = columns[customer_mean(days)]
        out[name] = np.divide(amounts, mean, out=np.ones(amounts.size), where=mean > 0)
    return out
