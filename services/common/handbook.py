"""The fraud handbook's simulated transactions: loading, schema checks, fetching.

Source: Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection -
Practical Handbook* (2022), chapter 3.2; data from the public repositories
Fraud-Detection-Handbook/simulated-data-raw (daily pickles, 2018-04-01..2018-09-30) and
simulated-data-transformed (the handbook's features, 2018-06-11..2018-09-14). The data is
simulated, not real card data. Knows nothing of Kafka or models.
"""

from __future__ import annotations

import datetime as dt
import io
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from services.common.errors import FraudError

TRANSACTIONS_FILE = "transactions.parquet"
REFERENCE_FILE = "features-reference.parquet"

SCHEMA: dict[str, str] = {
    "TRANSACTION_ID": "int64",
    "TX_DATETIME": "datetime64[ns]",
    "CUSTOMER_ID": "int64",
    "TERMINAL_ID": "int64",
    "TX_AMOUNT": "float64",
    "TX_TIME_SECONDS": "int64",
    "TX_TIME_DAYS": "int64",
    "TX_FRAUD": "int64",
    "TX_FRAUD_SCENARIO": "int64",
}
"""Columns and dtypes of transactions.parquet (event times naive, meaning UTC)."""

RAW_REPO = "https://github.com/Fraud-Detection-Handbook/simulated-data-raw/raw/main/data"
TRANSFORMED_REPO = (
    "https://github.com/Fraud-Detection-Handbook/simulated-data-transformed/raw/main/data"
)
RAW_DAYS = (dt.date(2018, 4, 1), dt.date(2018, 9, 30))
TRANSFORMED_DAYS = (dt.date(2018, 6, 11), dt.date(2018, 9, 14))


class DataError(FraudError, RuntimeError):
    """The data folder is missing, or a file does not have the handbook's schema."""


def check_schema(frame: pd.DataFrame, required: dict[str, str] = SCHEMA) -> None:
    """Raise :class:`DataError` naming every missing column or wrong dtype."""
    problems = [
        f"{col}: missing" if col not in frame.columns else f"{col}: {frame[col].dtype} != {want}"
        for col, want in required.items()
        if col not in frame.columns or str(frame[col].dtype) != want
    ]
    if problems:
        raise DataError("transactions do not match the handbook schema: " + "; ".join(problems))


def load_transactions(
    data_dir: Path,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pd.DataFrame:
    """Transactions sorted by ``TRANSACTION_ID`` (event-time order), optionally of
    ``start <= day < end``.

    Raises:
        DataError: the file is missing (the message says how to fetch it) or malformed.
    """
    path = data_dir / TRANSACTIONS_FILE
    if not path.exists():
        raise DataError(
            f"{path} not found. Set FRAUD_DATA_DIR to the folder that holds it, or run "
            "`fraud data --fetch` to download it from the handbook's public repositories."
        )
    frame = pd.read_parquet(path)
    check_schema(frame)
    frame = frame.sort_values("TRANSACTION_ID", kind="stable").reset_index(drop=True)
    if start is not None:
        frame = frame[frame["TX_DATETIME"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["TX_DATETIME"] < pd.Timestamp(end)]
    return frame.reset_index(drop=True)


def load_reference(data_dir: Path) -> pd.DataFrame:
    """The handbook's own engineered features (``features-reference.parquet``).

    Raises:
        DataError: the file is missing.
    """
    path = data_dir / REFERENCE_FILE
    if not path.exists():
        raise DataError(f"{path} not found; run `fraud data --fetch`")
    return pd.read_parquet(path)


def to_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Handbook rows as transaction events v1 (DESIGN.md, "Events"): ids as strings, event
    time as RFC 3339 UTC, currency EUR. Columns in contract order."""
    times = pd.to_datetime(frame["TX_DATETIME"], utc=True)
    return pd.DataFrame(
        {
            "schema_version": 1,
            "transaction_id": frame["TRANSACTION_ID"].astype(str).to_numpy(),
            "event_time": times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "customer_id": frame["CUSTOMER_ID"].astype(str).to_numpy(),
            "terminal_id": frame["TERMINAL_ID"].astype(str).to_numpy(),
            "amount": frame["TX_AMOUNT"].to_numpy(dtype=np.float64),
            "currency": "EUR",
        }
    )


def summary(frame: pd.DataFrame) -> dict[str, object]:
    """Row count, frauds, fraud rate, customers, terminals and the time range."""
    return {
        "transactions": len(frame),
        "frauds": int(frame["TX_FRAUD"].sum()),
        "fraud_rate": float(frame["TX_FRAUD"].mean()) if len(frame) else 0.0,
        "customers": int(frame["CUSTOMER_ID"].nunique()),
        "terminals": int(frame["TERMINAL_ID"].nunique()),
        "first": str(frame["TX_DATETIME"].min()),
        "last": str(frame["TX_DATETIME"].max()),
    }


Fetcher = Callable[[str], bytes]


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def fetch(
    data_dir: Path,
    get: Fetcher | None = None,
    raw_base: str = RAW_REPO,
    transformed_base: str = TRANSFORMED_REPO,
    progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> list[Path]:
    """Download the handbook's daily pickles and write the two Parquet files of ``data_dir``.

    The daily files are concatenated, sorted by ``TRANSACTION_ID``, id and time columns cast
    to int64, and written with zstd, the layout this project reads. The pickles are the
    handbook's own published files; pandas unpickles them, so fetch only from those sources.
    A file already there with the handbook's columns and rows is kept (:func:`usable`) unless
    ``force``; each file is written under a temporary name and renamed, so an interrupted
    fetch never leaves a partial file in its place.

    Returns:
        the files written (those kept are not in it).

    Raises:
        DataError: a download fails or a day's file lacks the handbook's columns.
    """
    get = get or _http_get  # looked up at the call: a test can replace the download
    data_dir.mkdir(parents=True, exist_ok=True)
    written = []
    jobs = [
        (raw_base, RAW_DAYS, TRANSACTIONS_FILE, SCHEMA),
        (transformed_base, TRANSFORMED_DAYS, REFERENCE_FILE, SCHEMA),
    ]
    jobs = [job for job in jobs if force or not usable(data_dir / job[2], job[3])]
    total = sum((days[1] - days[0]).days + 1 for _, days, _, _ in jobs)
    done = 0
    for base, (first, last), name, schema in jobs:
        frames = []
        for offset in range((last - first).days + 1):
            day = first + dt.timedelta(days=offset)
            url = f"{base}/{day.isoformat()}.pkl"
            try:
                frames.append(pd.read_pickle(io.BytesIO(get(url))))
            except OSError as error:
                raise DataError(f"could not download {url}: {error}") from error
            done += 1
            if progress is not None:
                progress(done, total)
        frame = _normalise(pd.concat(frames, ignore_index=True))
        check_schema(frame, schema)
        path = data_dir / name
        partial = path.with_name(f".{name}.partial")
        frame.to_parquet(partial, compression="zstd", index=False)
        partial.replace(path)
        written.append(path)
    return written


def usable(path: Path, schema: dict[str, str] = SCHEMA) -> bool:
    """Whether ``path`` is a whole Parquet file (its footer reads) with rows and every column
    of ``schema``; reads the footer alone, not the data."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError):  # missing, truncated or not Parquet (pyarrow's ArrowInvalid)
        return False
    return meta.num_rows > 0 and set(schema) <= set(meta.schema.names)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("TRANSACTION_ID", kind="stable").reset_index(drop=True)
    for col in (
        "TRANSACTION_ID",
        "CUSTOMER_ID",
        "TERMINAL_ID",
        "TX_TIME_SECONDS",
        "TX_TIME_DAYS",
        "TX_FRAUD",
        "TX_FRAUD_SCENARIO",
    ):
        if col in frame.columns:
            frame[col] = frame[col].astype("int64")
    frame["TX_AMOUNT"] = frame["TX_AMOUNT"].astype("float64")
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"]).astype("datetime64[ns]")
    return frame
