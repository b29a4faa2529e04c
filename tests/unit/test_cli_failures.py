"""``fraud``'s failures that are no bug: a message and exit 1 (or 2), not a traceback."""

from __future__ import annotations

import argparse

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
