"""The exception tree and the retry loop it drives (``services.common.errors``)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from models.registry import RegistryError
from services.api.problems import Problem
from services.common.errors import FraudError, Unavailable, is_retryable, retry
from services.common.events import InvalidEvent
from services.observability.report import ReportError
from services.stack.errors import StackError


def test_every_project_error_is_a_fraud_error_and_says_if_a_retry_can_help() -> None:
    assert not is_retryable(InvalidEvent("missing_field:amount", "amount is required"))
    assert not is_retryable(RegistryError("no v9"))
    assert not is_retryable(StackError("port taken"))
    assert is_retryable(ReportError("prometheus away"))
    assert is_retryable(Problem(503, "unavailable", "Redis is away"))
    assert not is_retryable(Problem(404, "decision-not-found", "No decision"))
    assert all(
        isinstance(e, FraudError)
        for e in (InvalidEvent("a", "b"), RegistryError(), StackError(), Problem(400, "x", "y"))
    )


def test_client_errors_are_classified() -> None:
    assert is_retryable(RedisConnectionError("refused"))
    assert is_retryable(TimeoutError())
    assert not is_retryable(ResponseError("WRONGTYPE"))  # a bug or bad data: retrying hides it
    # a Redis Cluster failing over, as redis-py raises what the nodes answer
    assert is_retryable(ClusterDownError("The cluster is down"))
    assert is_retryable(MasterDownError("Link with MASTER is down"))
    assert is_retryable(TryAgainError("Multiple keys request during rehashing of slot"))
    assert is_retryable(SlotNotCoveredError("Slot 42 is not covered by the cluster"))
    assert is_retryable(ReadOnlyError("You can't write against a read only replica."))
    assert not is_retryable(KeyError("transaction_id"))


def _flaky(failures: list[BaseException]) -> tuple[list[int], object]:
    calls: list[int] = []

    async def action() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, action


def test_retry_retries_what_can_succeed_and_returns() -> None:
    calls, action = _flaky([RedisConnectionError("a"), RedisConnectionError("b")])
    result = asyncio.run(retry(action, "test", deadline_s=5, first_delay_s=0.001))  # type: ignore[arg-type]
    assert result == "done" and len(calls) == 3


def test_retry_raises_a_bug_at_once() -> None:
    calls, action = _flaky([KeyError("transaction_id")])
    with pytest.raises(KeyError):
        asyncio.run(retry(action, "test", deadline_s=5, first_delay_s=0.001))  # type: ignore[arg-type]
    assert len(calls) == 1


def test_retry_gives_up_at_the_deadline() -> None:
    calls, action = _flaky([RedisConnectionError(str(i)) for i in range(1000)])
    with pytest.raises(Unavailable) as raised:
        asyncio.run(
            retry(action, "store", deadline_s=0.05, first_delay_s=0.01, max_delay_s=0.01)  # type: ignore[arg-type]
        )
    assert isinstance(raised.value.__cause__, RedisConnectionError)
    assert 2 <= len(calls) <= 6  # about deadline / delay attempts, then no more
