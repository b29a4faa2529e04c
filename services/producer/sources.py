"""Where events come from: a transaction file (Parquet or CSV) or a seeded simulator.

Both yield transaction events v1 (and, for files with labels, label events) as JSON bytes in
event-time order. Knows nothing of Kafka.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.common.events import mask_card_numbers
from services.common.handbook import DataError
from services.features.definitions import LABEL_DELAY_DAYS

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

HANDBOOK_COLUMNS = {
    "transaction_id": "TRANSACTION_ID",
    "event_time": "TX_DATETIME",
    "customer_id": "CUSTOMER_ID",
    "terminal_id": "TERMINAL_ID",
    "amount": "TX_AMOUNT",
    "is_fraud": "TX_FRAUD",
}
"""Default column mapping: contract field -> column of the file (the handbook layout)."""


@dataclass(frozen=True)
class Event:
    """One record to produce."""

    topic: str  # "transactions" or "labels"
    key: bytes
    value: bytes
    event_time_ms: int
    transaction_id: str = ""


def read_file(path: Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """A Parquet or CSV file of transactions, columns renamed to the contract's, sorted by
    event time (ties keep the file's order). Naive times are taken as UTC.

    Raises:
        DataError: the file is neither .parquet nor .csv, a mapped column is missing
            (``is_fraud`` is optional), or an event time or amount does not parse (the
            message names the first such row).
    """
    mapping = {**HANDBOOK_COLUMNS, **(columns or {})}
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise DataError(f"{path}: expected a .parquet or .csv file")
    missing = [col for field, col in mapping.items() if field != "is_fraud" and col not in frame]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; map them with --column FIELD=COLUMN")
    renamed = frame.rename(columns={col: field for field, col in mapping.items()})
    for field in ("event_time", "amount"):
        parsed: pd.Series = (
            pd.to_datetime(renamed[field], utc=True, errors="coerce")
            if field == "event_time"
            else pd.to_numeric(renamed[field], errors="coerce")
        )
        bad = parsed.isna()  # unparsed, or missing
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            shown = mask_card_numbers(str(renamed[field].iloc[row]))[:40]
            raise DataError(
                f"{path}: {mapping[field]} of data row {row + 1} ({shown!r}) is not "
                f"{'a time' if field == 'event_time' else 'a number'} ({int(bad.sum())} such rows)"
            )
        renamed[field] = parsed
    return renamed.sort_values("event_time", kind="stable").reset_index(drop=True)


def replay_events(
    frame: pd.DataFrame,
    start: dt.date | None,
    end: dt.date | None,
    label_lead_days: float = 1.0,
) -> Iterator[Event]:
    """Transactions with ``start <= day < end`` and, interleaved in event time, the labels due
    in that period.

    A transaction's label is due ``label_lead_days`` before the delayed terminal window first
    counts the transaction (7 days after it), so a scorer that lags a little has it in place.
    Labels of transactions before ``start`` that fall due after it are emitted too.
    """
    times = frame["event_time"]
    lo = pd.Timestamp(start, tz="UTC") if start else times.min()
    hi = pd.Timestamp(end, tz="UTC") if end else times.max() + pd.Timedelta(seconds=1)
    lead = pd.Timedelta(days=LABEL_DELAY_DAYS - label_lead_days)
    txs = frame[(times >= lo) & (times < hi)]
    labelled = frame[(times + lead >= lo) & (times + lead < hi)] if "is_fraud" in frame else None
    tx_events = _transaction_events(txs)
    label_events = _label_events(labelled, lead) if labelled is not None else iter(())
    yield from _merge(tx_events, label_events)


def _ms(times: pd.Series) -> np.ndarray:
    return np.asarray((times.astype("int64") // 1_000_000).to_numpy(), dtype=np.int64)


def _iso(times: pd.Series) -> np.ndarray:
    return np.asarray(times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(), dtype=object)


def _transaction_events(txs: pd.DataFrame) -> Iterator[Event]:
    ids, customers = txs["transaction_id"].astype(str), txs["customer_id"].astype(str)
    terminals, amounts = txs["terminal_id"].astype(str), txs["amount"].astype(float)
    currency = txs["currency"] if "currency" in txs else pd.Series("EUR", index=txs.index)
    for row in zip(
        ids,
        _iso(txs["event_time"]),
        customers,
        terminals,
        amounts,
        currency,
        _ms(txs["event_time"]),
        strict=True,
    ):
        tid, when, customer, terminal, amount, cur, ms = row
        value = {
            "schema_version": 1,
            "transaction_id": tid,
            "event_time": when,
            "customer_id": customer,
            "terminal_id": terminal,
            "amount": amount,
            "currency": cur,
        }
        yield Event("transactions", customer.encode(), json.dumps(value).encode(), int(ms), tid)


def _label_events(labelled: pd.DataFrame, lead: pd.Timedelta) -> Iterator[Event]:
    due = labelled["event_time"] + lead
    for tid, customer, terminal, when, fraud, reported, due_ms in zip(
        labelled["transaction_id"].astype(str),
        labelled["customer_id"].astype(str),
        labelled["terminal_id"].astype(str),
        _iso(labelled["event_time"]),
        labelled["is_fraud"].astype(int),
        _iso(due),
        _ms(due),
        strict=True,
    ):
        value = {
            "transaction_id": tid,
            "customer_id": customer,
            "terminal_id": terminal,
            "transaction_time": when,
            "is_fraud": bool(fraud),
            "reported_at": reported,
            "source": "replay",
        }
        yield Event("labels", tid.encode(), json.dumps(value).encode(), int(due_ms))


def _merge(txs: Iterator[Event], labels: Iterator[Event]) -> Iterator[Event]:
    """Both streams in event-time order; at equal times a label goes first."""
    label = next(labels, None)
    for tx in txs:
        while label is not None and label.event_time_ms <= tx.event_time_ms:
            yield label
            label = next(labels, None)
        yield tx


def simulated_events(
    customers: int,
    terminals: int,
    seed: int = 0,
    start: dt.datetime | None = None,
    mean_gap_ms: float = 10.0,
    keep: Callable[[IntArray, IntArray], BoolArray] | None = None,
) -> Iterator[Event]:
    """An endless seeded stream of transactions with the handbook's shape: each card has its
    own mean amount (uniform 5-100, standard deviation half of it) and pays at any terminal.

    Event times start at ``start`` (default now) and advance by exponential gaps of
    ``mean_gap_ms`` (event time; the producer's rate is set separately).

    Args:
        keep: given the card and terminal numbers of a block of the stream (int arrays of the
            same shape), True where the event is wanted. The stream is the same with or
            without it (ids, times, amounts); unwanted events are skipped before they are
            built, so a large population's stream can be thinned to a sample of its cards and
            terminals cheaply.
    """
    rng = np.random.default_rng(seed)
    means = rng.uniform(5, 100, customers)
    now_ms = int((start or dt.datetime.now(dt.UTC)).timestamp() * 1000)
    serial = 0
    while True:
        n = 4096
        cust = rng.integers(0, customers, n)
        term = rng.integers(0, terminals, n)
        amounts = np.round(np.abs(rng.normal(means[cust], means[cust] / 2)), 2)
        gaps = rng.exponential(mean_gap_ms, n).astype(np.int64)
        times = now_ms + np.cumsum(gaps)
        rows = np.arange(n) if keep is None else np.flatnonzero(keep(cust, term))
        for i in rows.tolist():
            yield _simulated(seed, serial + i + 1, int(times[i]), cust[i], term[i], amounts[i])
        now_ms, serial = int(times[-1]), serial + n


def _simulated(seed: int, serial: int, now_ms: int, c: int, t: int, amount: float) -> Event:
    when = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    value = {
        "schema_version": 1,
        "transaction_id": f"sim-{seed}-n{serial}",  # the n: never a 13-digit run (a card number)
        "event_time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z",
        "customer_id": f"c{c}",
        "terminal_id": f"t{t}",
        "amount": float(amount),
        "currency": "EUR",
    }
    return Event(
        "transactions",
        f"c{c}".encode(),
        json.dumps(value).encode(),
        now_ms,
        str(value["transaction_id"]),
    )
