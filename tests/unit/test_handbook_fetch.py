"""`fraud data --fetch` conversion: daily pickles to the project's Parquet layout.

The handbook's repositories are not reachable from the test machines; the download function
is injected, serving pickles made here in the handbook's daily layout.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from services.common import handbook


def _day(day: dt.date, first_id: int) -> bytes:
    times = pd.to_datetime([f"{day} 00:00:31", f"{day} 12:00:00"])
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": [first_id + 1, first_id],  # out of order on purpose
            "TX_DATETIME": times[::-1],
            "CUSTOMER_ID": [3, 4],
            "TERMINAL_ID": [7, 8],
            "TX_AMOUNT": [10.5, 99.0],
            "TX_TIME_SECONDS": [100, 50],
            "TX_TIME_DAYS": [(day - dt.date(2018, 4, 1)).days] * 2,
            "TX_FRAUD": [0, 1],
            "TX_FRAUD_SCENARIO": [0, 1],
        }
    ).astype(object)  # the originals hold Python ints
    buffer = io.BytesIO()
    pickle.dump(frame, buffer)
    return buffer.getvalue()


def test_fetch_writes_the_parquet_layout(tmp_path: Path) -> None:
    requested: list[str] = []

    def fake_get(url: str) -> bytes:
        requested.append(url)
        day = dt.date.fromisoformat(url.rsplit("/", 1)[1].removesuffix(".pkl"))
        return _day(day, 10 * (day - dt.date(2018, 4, 1)).days)

    written = handbook.fetch(tmp_path, get=fake_get, raw_base="raw", transformed_base="tr")
    assert [p.name for p in written] == ["transactions.parquet", "features-reference.parquet"]
    assert requested[0] == "raw/2018-04-01.pkl" and requested[182] == "raw/2018-09-30.pkl"
    assert requested[183] == "tr/2018-06-11.pkl" and len(requested) == 183 + 96
    frame = handbook.load_transactions(tmp_path)
    assert len(frame) == 2 * 183
    assert frame["TRANSACTION_ID"].is_monotonic_increasing
    assert str(frame["TRANSACTION_ID"].dtype) == "int64"


def test_a_failed_download_names_the_url(tmp_path: Path) -> None:
    def broken(url: str) -> bytes:
        raise OSError("connection refused")

    with pytest.raises(handbook.DataError, match=r"2018-04-01\.pkl"):
        handbook.fetch(tmp_path, get=broken)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(handbook.DataError, match="fraud data --fetch"):
        handbook.load_transactions(tmp_path)


def _fake_get(requested: list[str]) -> handbook.Fetcher:
    def get(url: str) -> bytes:
        requested.append(url)
        day = dt.date.fromisoformat(url.rsplit("/", 1)[1].removesuffix(".pkl"))
        return _day(day, 10 * (day - dt.date(2018, 4, 1)).days)

    return get


def test_files_already_there_are_kept_unless_forced(tmp_path: Path) -> None:
    requested: list[str] = []
    handbook.fetch(tmp_path, get=_fake_get(requested))
    transactions = tmp_path / handbook.TRANSACTIONS_FILE
    before = transactions.stat().st_mtime_ns

    def offline(url: str) -> bytes:
        raise OSError("no network")

    assert handbook.fetch(tmp_path, get=offline) == []  # nothing downloaded, nothing written
    assert transactions.stat().st_mtime_ns == before
    # a truncated file (an old fetch cut short) is downloaded again; the whole one is kept
    reference = tmp_path / handbook.REFERENCE_FILE
    reference.write_bytes(reference.read_bytes()[:100])
    requested.clear()
    assert handbook.fetch(tmp_path, get=_fake_get(requested)) == [reference]
    assert len(requested) == 96 and all(
        url.startswith(handbook.TRANSFORMED_REPO) for url in requested
    )
    assert len(pd.read_parquet(reference)) == 2 * 96
    requested.clear()
    assert handbook.fetch(tmp_path, get=_fake_get(requested), force=True) == [
        transactions,
        reference,
    ]
    assert len(requested) == 183 + 96
    assert not list(tmp_path.glob(".*.partial"))


def test_a_file_without_the_handbook_columns_is_not_usable(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pd.DataFrame({"TRANSACTION_ID": [1]}).to_parquet(path)
    assert not handbook.usable(path)
    assert not handbook.usable(tmp_path / "missing.parquet")
    pd.DataFrame({c: pd.Series([], dtype="int64") for c in handbook.SCHEMA}).to_parquet(path)
    assert not handbook.usable(path)  # no rows


def test_fraud_data_fetch_keeps_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    handbook.fetch(tmp_path, get=_fake_get([]))
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))

    def offline(url: str) -> bytes:
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(handbook, "_http_get", offline)
    assert main(["data", "--fetch"]) == 0
    out = capsys.readouterr().out
    assert f"kept {tmp_path / handbook.TRANSACTIONS_FILE} (already there" in out
    assert "transactions 366" in out
    assert main(["data", "--fetch", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["transactions"] == 366 and summary["schema"] == "ok"
    assert main(["data", "--force"]) == 2
    assert "--force goes with --fetch" in capsys.readouterr().err
