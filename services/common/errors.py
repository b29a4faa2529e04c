"""The project's exception tree, and the one retry loop driven by it.

Every error the project raises derives from :class:`FraudError`, whose ``retryable`` says
whether the same call can succeed later without anyone changing anything (a dependency that
was away answers again) or not (bad input, a bug, a missing file: retrying only hides it):

    FraudError
    ├── InvalidEvent          (services.common.events)  bad input: dead-letter, never retry
    ├── DataError             (services.common.handbook)
    ├── FeatureStoreError     (services.common.feast_store)
    ├── RegistryError         (models.registry)
    ├── StackError            (services.stack.errors)
    ├── ReportError           (services.observability.prometheus) retryable: Prometheus away
    ├── Problem               (services.api.problems)  retryable when the status is 503
    └── Unavailable           a dependency did not answer within its deadline: retryable

Errors of the client libraries are classified by :func:`is_retryable` (Redis connection and
timeout errors and a cluster's failover answers, Kafka errors that say ``retriable``, timeouts
and refused connections).
Knows nothing of the services that raise them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

log = logging.getLogger("fraud")
T = TypeVar("T")


class FraudError(Exception):
    """Base of the project's errors.

    Attributes:
        retryable: True when trying the same call again, unchanged, can succeed.
    """

    retryable: bool = False


class Unavailable(FraudError):
    """A dependency (Redis, Kafka, Prometheus) did not answer in time."""

    retryable = True


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` may go away by itself: a :class:`FraudError` says so itself; Redis
    connection and timeout errors and a Redis Cluster's failover answers (``CLUSTERDOWN``,
    ``TRYAGAIN``, a slot not covered, ``READONLY``), Kafka errors marked ``retriable``
    (aiokafka and kafka-python both mark them), timeouts and OS-level connection errors do;
    anything else (a bug, bad data) does not."""
    if isinstance(error, FraudError):
        return error.retryable
    if getattr(error, "retriable", False):  # aiokafka / kafka-python
        return True
    return isinstance(error, (*redis_away(), TimeoutError, ConnectionError))


def redis_away() -> tuple[type[Exception], ...]:
    """The Redis errors that mean the server or the cluster is away for now (retry later),
    not that a command was refused: connection errors and timeouts, and what a Redis
    Cluster failing over answers until a replica is promoted (``CLUSTERDOWN``, its
    ``MASTERDOWN``, ``TRYAGAIN``, a slot not covered, ``READONLY`` from a demoted master).
    redis-py retries single commands on some of these itself, not a pipeline: the recorder
    crashed on ``CLUSTERDOWN`` in `fraud chaos`'s redis-master-kill (CI, 2026-12-04)."""
    from redis import exceptions as e

    return (
        e.ConnectionError,
        e.TimeoutError,
        e.ClusterError,
        e.TryAgainError,
        e.SlotNotCoveredError,
        e.ReadOnlyError,
    )


async def retry(
    action: Callable[[], Awaitable[T]],
    what: str,
    *,
    deadline_s: float,
    attempt_timeout_s: float = 10.0,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> T:
    """Run ``action`` until it succeeds, retrying only what :func:`is_retryable` calls
    retryable, with delays doubling from ``first_delay_s`` to ``max_delay_s``, for at most
    ``deadline_s`` seconds in all. Each attempt gets ``attempt_timeout_s``.

    Raises:
        Unavailable: still failing after ``deadline_s`` (the last error is its cause).
        Exception: the first error that is not retryable, unchanged.
    """
    began = time.monotonic()
    delay = first_delay_s
    while True:
        try:
            return await asyncio.wait_for(action(), timeout=attempt_timeout_s)
        except Exception as error:
            if not is_retryable(error):
                raise
            waited = time.monotonic() - began
            if waited + delay > deadline_s:
                raise Unavailable(
                    f"{what}: {type(error).__name__} for {waited:.0f} s, giving up"
                ) from error
            log.warning("dependency_unavailable what=%s error=%s", what, type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def plain_message(error: Mapping[str, Any]) -> str:
    """One pydantic validation error's message for a person (an item of ``errors()``):
    without the ``Value error, `` pydantic puts before a validator's own ValueError."""
    return str(error.get("msg", "")).removeprefix("Value error, ")
