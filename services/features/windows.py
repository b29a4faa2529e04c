"""Event-time window aggregates: the single implementation behind every velocity feature.

Every function works on events sorted by ``(entity, event time)`` and encoded as one int64
*key* per event, ``entity_code * KEY_SPAN + time_ms``, so one ``searchsorted`` serves all
entities at once (batch) or one entity alone (streaming, ``entity_code = 0``). Amounts are
summed in minor units (cents) as integers, so sums are exact and means are correctly rounded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from services.features.definitions import MS_PER_DAY

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

KEY_SPAN = 1 << 42
"""Milliseconds one entity's keys may span (about 139 years after 1970)."""


def event_keys(entity_codes: Int64Array, times_ms: Int64Array) -> Int64Array:
    """The sort key of each event: entity code in the high bits, event time (ms) below.

    Raises:
        ValueError: an event time is before 1970 or beyond the key span.
    """
    if times_ms.size and (times_ms.min() < 0 or times_ms.max() >= KEY_SPAN):
        raise ValueError("event times must lie in [1970, 2109) as epoch milliseconds")
    return entity_codes.astype(np.int64) * KEY_SPAN + times_ms.astype(np.int64)


def prefix_sums(values: Int64Array) -> Int64Array:
    """``[0, v0, v0+v1, ...]``: the sum of ``values[i:j]`` is ``p[j] - p[i]``."""
    out = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


def trailing_window(
    keys: Int64Array,
    amount_prefix: Int64Array,
    positions: Int64Array,
    days: int,
) -> tuple[Int64Array, FloatArray]:
    """Count and mean amount of an entity's events in ``(t - days, t]``, the event itself
    included and any later event of the same instant excluded.

    Args:
        keys: sorted event keys (:func:`event_keys`), shape (n,).
        amount_prefix: :func:`prefix_sums` of the events' amounts in cents, shape (n + 1,).
        positions: index in ``keys`` of each event to describe, shape (m,).
        days: window length.

    Returns:
        (counts, means in currency units), each of shape (m,). Counts are at least 1.

    Source: handbook chapter 3.4, customer spending features (pandas ``rolling('nd')``).
    """
    lo = np.searchsorted(keys, keys[positions] - days * MS_PER_DAY, side="right")
    counts = positions + 1 - lo
    sums = amount_prefix[positions + 1] - amount_prefix[lo]
    return counts.astype(np.int64), sums / counts / 100.0


def trailing_sum(
    keys: Int64Array, prefix: Int64Array, positions: Int64Array, days: int
) -> Int64Array:
    """Sum of any per-event integer (given as :func:`prefix_sums`) over the same window as
    :func:`trailing_window`: ``(t - days, t]``, the event included, later ties excluded."""
    lo = np.searchsorted(keys, keys[positions] - days * MS_PER_DAY, side="right")
    return (prefix[positions + 1] - prefix[lo]).astype(np.int64)


def delayed_window(
    keys: Int64Array,
    fraud_prefix: Int64Array,
    query_keys: Int64Array,
    days: int,
    delay_days: int,
) -> tuple[Int64Array, FloatArray]:
    """Count and fraud share of an entity's events in ``(t - delay - days, t - delay]``.

    Args:
        keys: sorted event keys of the entity's transactions, shape (n,).
        fraud_prefix: :func:`prefix_sums` of 1 for a transaction labelled fraud (a label the
            system has received), 0 otherwise, shape (n + 1,).
        query_keys: the key of each instant ``t`` to describe, shape (m,).
        days, delay_days: window length and label delay.

    Returns:
        (counts, risk), shape (m,) each; risk is 0 where the window is empty.

    Source: handbook chapter 3.4, terminal risk features.
    """
    hi = np.searchsorted(keys, query_keys - delay_days * MS_PER_DAY, side="right")
    lo = np.searchsorted(keys, query_keys - (delay_days + days) * MS_PER_DAY, side="right")
    counts = (hi - lo).astype(np.int64)
    frauds = fraud_prefix[hi] - fraud_prefix[lo]
    risk = np.divide(frauds, counts, out=np.zeros(counts.size), where=counts > 0)
    return counts, risk


def to_cents(amounts: npt.ArrayLike) -> Int64Array:
    """Amounts in currency units to integer minor units (cents), rounded half to even."""
    return np.rint(np.asarray(amounts, dtype=np.float64) * 100.0).astype(np.int64)


def first_flag_window(
    keys: Int64Array,
    flags: Int64Array,
    query_keys: Int64Array,
    days: int,
    delay_days: int,
) -> tuple[FloatArray, FloatArray]:
    """Age of an entity's first flagged event in ``(t - delay - days, t - delay]``, and the
    share of flagged events among its events from that one's time to ``t - delay``.

    The flag is a fraud label the system has received, so only events at least ``delay`` old
    count (as in :func:`delayed_window`). Events at the first flagged event's own instant
    all count, whatever their order among themselves.

    Args:
        keys: sorted event keys of the entity's transactions, shape (n,).
        flags: 1 for a flagged event, else 0, shape (n,).
        query_keys: the key of each instant ``t`` to describe, shape (m,).
        days, delay_days: window length and label delay.

    Returns:
        (age in days, share), shape (m,) each. Where no event of the window is flagged, the
        age is ``delay + days`` (outside the window: ages inside lie in ``[delay, delay +
        days)``) and the share 0.

    Source: our own, for the handbook simulator's compromised terminals (chapter 3.2,
    scenario 2: every transaction at a terminal is fraudulent for the 28 days after it is
    compromised).
    """
    hi = np.searchsorted(keys, query_keys - delay_days * MS_PER_DAY, side="right")
    lo = np.searchsorted(keys, query_keys - (delay_days + days) * MS_PER_DAY, side="right")
    flagged = np.append(np.flatnonzero(flags), keys.size)  # the last: "none"
    first = flagged[np.searchsorted(flagged, lo, side="left")]  # first flagged at >= lo
    found = first < hi
    first_keys = np.where(found, np.append(keys, 0)[first], query_keys)
    since = np.searchsorted(keys, first_keys, side="left")  # ties at its instant count
    count = np.where(found, hi - since, 0)
    prefix = prefix_sums(flags)
    hits = np.where(found, prefix[hi] - prefix[np.minimum(since, hi)], 0)
    share = np.divide(hits, count, out=np.zeros(count.size), where=count > 0)
    age = np.where(found, (query_keys - first_keys) / MS_PER_DAY, float(delay_days + days))
    return age, share
