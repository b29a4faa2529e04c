"""``fraud``'s failures that are no bug: a message and exit 1 (or 2), not a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import redis
from aiokafka import errors as aiokafka_errors
from kafka import errors as kafka_errors

from services.cli import dependency_failure, field_column, main


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (redis.exceptions.ConnectionError("Error 111 connecting"), "Redis did not answer"),
        (redis.exceptions.TimeoutError("Timeout reading"), "Redis did not answer"),
        (kafka_errors.KafkaTimeoutError("Unable to bootstrap"), "Kafka did not answer"),
        (kafka_errors.BrokerNotAvailableError(), "Kafka did not answer"),
        (aiokafka_errors.KafkaConnectionError("no broker"), "Kafka did not answer"),
        (FileNotFoundError(2, "No such file or directory", "/x.parquet"), "/x.parquet"),
    ],
)
def test_unreachable_dependencies_and_missing_files_get_a_sentence(
    error: BaseException, says: str
) -> None:
    message = dependency_failure(error)
    assert message is not None and says in message


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), KeyError("k"), redis.exceptions.ResponseError("WRONGTYPE")],
)
def test_other_errors_keep_their_traceback(error: BaseException) -> None:
    assert dependency_failure(error) is None


def test_column_mappings_must_name_a_field_and_a_column() -> None:
    assert field_column("amount=TX_AMOUNT") == ("amount", "TX_AMOUNT")
    assert field_column("note=a=b") == ("note", "a=b")
    for bad in ("bad", "=TX_AMOUNT", "amount="):
        with pytest.raises(argparse.ArgumentTypeError):
            field_column(bad)


def test_a_missing_file_is_exit_1_with_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--file", "/nonexistent/transactions.parquet", "--count", "1"]) == 1
    assert "/nonexistent/transactions.parquet" in capsys.readouterr().err


def test_a_bad_setting_names_its_variable_not_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUD_SCORER__INFERENCE", "gpu")
    monkeypatch.setenv("FRAUD_REDIS__PORT", "s3cret-port")
    assert main(["status"]) == 2
    said = capsys.readouterr().err
    assert "FRAUD_SCORER__INFERENCE: Input should be 'trees'" in said
    assert "FRAUD_REDIS__PORT: Input should be a valid integer" in said
    assert "s3cret-port" not in said and "errors.pydantic.dev" not in said


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (redis.exceptions.AuthenticationError("invalid username-password pair"), "credentials"),
        (redis.exceptions.ResponseError("DB index is out of range"), "FRAUD_REDIS__DB"),
    ],
)
def test_redis_refusals_that_a_setting_causes_name_the_setting(
    error: BaseException, says: str
) -> None:
    message = dependency_failure(error)
    assert message is not None and says in message and "did not answer" not in message


@pytest.mark.parametrize(
    ("content", "name", "says"),
    [
        ("a,b\n1,2\n", "t.csv", "lacks columns"),
        ("x", "t.txt", "expected a .parquet or .csv file"),
        (None, "bad-time.csv", "TX_DATETIME of data row 2 ('not-a-date') is not a time"),
        (None, "bad-amount.csv", "TX_AMOUNT of data row 1 ('abc') is not a number"),
    ],
)
def test_a_transaction_file_that_does_not_parse_is_exit_1_with_a_sentence(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    name: str,
    says: str,
) -> None:
    header = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
    rows = {
        "bad-time.csv": "1,2018-08-08 00:00:01,1,2,10.5,0\n2,not-a-date,1,2,3.0,0\n",
        "bad-amount.csv": "1,2018-08-08 00:00:01,1,2,abc,0\n",
    }
    path = tmp_path / name
    path.write_text(content if content is not None else header + rows[name])
    assert main(["produce", "--file", str(path), "--count", "1"]) == 1
    said = capsys.readouterr().err
    assert says in said and "Traceback" not in said, said


@pytest.mark.parametrize(
    "args",
    [
        ["--simulate", "--customers", "0"],
        ["--simulate", "--terminals", "-1"],
        ["--simulate", "--seed", "-1"],
        ["--label-lead-days", "nan"],
        ["--rate", "-5"],
        ["--rate", "inf"],
        ["--count", "0"],
        ["--skip-events", "-5"],
        ["--max-outage-s", "-1"],
        ["--metrics-port", "70000"],
    ],
)
def test_produce_refuses_numbers_out_of_range_as_usage(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["produce", *args])
    assert stopped.value.code == 2
    said = capsys.readouterr().err
    assert "out of range" in said or "is not a" in said, said


def test_produce_refuses_a_window_that_ends_before_it_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["produce", "--from", "2018-08-10", "--to", "2018-08-09"]) == 2
    assert "must be after --from" in capsys.readouterr().err


def test_a_settings_section_that_is_not_json_and_a_bad_log_level_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUD_KAFKA", "foo")
    assert main(["status"]) == 2
    assert 'field "kafka"' in capsys.readouterr().err
    monkeypatch.delenv("FRAUD_KAFKA")
    monkeypatch.setenv("FRAUD_SCORER__LOGLEVEL", "bogus")
    assert main(["status"]) == 2
    assert "FRAUD_SCORER__LOGLEVEL: Input should be 'debug'" in capsys.readouterr().err


def test_features_are_written_to_a_parquet_name_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.csv"  # Parquet bytes under a .csv name, once
    assert main(["features", "--from", "2018-08-08", "--to", "2018-08-09", "--out", str(out)]) == 2
    assert "name it .parquet" in capsys.readouterr().err and not out.exists()


def test_rebuild_store_without_kafka_says_so_once(tmp_path: Path) -> None:
    """The sentence alone: aiokafka's own line for the refused connection and its warning of
    an unclosed consumer came before and after it."""
    import os
    import subprocess
    import sys

    from services.common.settings import PROJECT_ROOT

    env = {
        **os.environ,
        "FRAUD_VAR_DIR": str(tmp_path),
        "FRAUD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens there
        "FRAUD_REDIS__PORT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "rebuild-store"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fraud rebuild-store: Kafka did not answer"), (
        done.stderr
    )
