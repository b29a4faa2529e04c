"""What the recording worker does with a batch of records: the terminals' history and the
decision store. Each effect is idempotent by transaction id, so a batch repeated after a crash
changes nothing; each returns only once its effect is durable (the caller commits after it).

Redis errors are retried by :func:`services.common.errors.retry` (retryable errors only, up to
the deadline, then :class:`~services.common.errors.Unavailable`). Knows nothing of consumer
groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from services.common import shadow_store
from services.common.decision import decode_where
from services.common.decision_store import DecisionStore
from services.common.errors import Unavailable, retry
from services.common.events import InvalidEvent, Label, check_record_key, parse_label
from services.scorer import metrics
from services.scorer.pipeline import Rejected, send_dead_letters
from services.scorer.ports import Record
from services.scorer.terminal_state import Observed, TerminalState

log = logging.getLogger("fraud.scorer")

LAST_LABEL_KEY = "recorder:last_label_at"
"""Epoch seconds of the last label applied to terminal risk, in Redis: a writer that starts
(a restart, a standby taking over) reports the label age from it instead of from 0."""


def terminal_events(
    records: Sequence[Record], decisions_topic: str
) -> tuple[list[Observed], list[Label], list[Rejected]]:
    """Split ``decisions`` and ``labels`` records into what the terminals record (decided
    transactions, valid labels) and the labels that break the label contract, each with
    why (for ``labels.dlq``)."""
    observed, labels, rejected = [], [], []
    for record in records:
        if record.topic == decisions_topic:
            observed.append(Observed(*decode_where(record.value or b"")))
            continue
        try:
            check_record_key(record.key)
            labels.append(parse_label(record.value or b""))
        except InvalidEvent as error:
            rejected.append((record, error))
        except Exception as error:
            # a bug of the validator: the label goes to the dead-letter topic, not in a loop
            log.exception("validator_failed topic=%s offset=%s", record.topic, record.offset)
            why = InvalidEvent("unreadable", f"the validator failed: {type(error).__name__}")
            rejected.append((record, why))
    return observed, labels, rejected


class LabelDeadLetters:
    """Labels that break the contract -> ``labels.dlq`` (:func:`send_dead_letters`: bytes
    with card numbers masked, reason, detail and source offset in headers), through a producer
    started on the first such label.

    A broker that is away is waited for up to ``deadline_s``, in attempts of ``attempt_s``
    (the producer's own request timeout must be shorter: an attempt cut at its timeout closes
    its producer, so the next attempt's records are not queued behind the first's). An error
    no retry can mend (no such topic, no right to write it), or a broker away for longer,
    leaves the label where it is on ``labels`` (kept forever), logged with its offset: one bad
    label never holds the terminals' writer up for good.

    Args:
        start_producer: starts an idempotent, ``acks=all`` producer whose request timeout is
            under ``attempt_s``.
        topic: the dead-letter topic's name.
        deadline_s: how long a delivery is retried while the broker is away.
        attempt_s: how long one attempt may take.
    """

    def __init__(
        self,
        start_producer: Callable[[], Awaitable[Any]],
        topic: str,
        deadline_s: float,
        attempt_s: float = 10.0,
    ) -> None:
        self.start_producer = start_producer
        self.topic = topic
        self.deadline_s = deadline_s
        self.attempt_s = attempt_s
        self._producer: Any = None

    async def __call__(self, rejects: Sequence[Rejected]) -> None:
        """Deliver ``rejects`` to the dead-letter topic and count them (by reason, in
        ``fraud_label_dead_letters_total``); returns once the broker has them, or once it is
        clear that it will not take them (then each is logged with its source offset)."""

        async def deliver() -> None:
            if self._producer is None:
                self._producer = await self.start_producer()
            try:
                sent = await send_dead_letters(self._producer, self.topic, rejects, counter=None)
                await asyncio.gather(*sent)
            except BaseException as error:  # a cancelled attempt too (its timeout)
                # an idempotent producer whose batch failed refuses the partition's next ones
                # (worker.Runtime.renew_producer): the next attempt starts a new one
                await self.close()
                if isinstance(error, KafkaTimeoutError | KafkaConnectionError) or (
                    isinstance(error, KafkaError) and error.retriable
                ):
                    raise Unavailable(f"{self.topic}: {type(error).__name__}") from error
                raise

        try:
            await retry(
                deliver, self.topic, deadline_s=self.deadline_s, attempt_timeout_s=self.attempt_s
            )
        except Exception as error:
            for record, why in rejects:
                log.error(
                    "label_dead_letter_unsent reason=%s source=%s/%s/%s error=%s "
                    "(the label stays on its topic)",
                    why.reason,
                    record.topic,
                    record.partition,
                    record.offset,
                    type(error).__name__,
                )
        for _, why in rejects:
            metrics.LABEL_DEAD_LETTERS.labels(reason=why.reason.split(":")[0]).inc()

    async def close(self) -> None:
        """Stop the producer, if one was started (waiting at most ``attempt_s`` for it)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.attempt_s)
            except Exception as error:
                log.warning("producer_stop_failed error=%r", error)


class TerminalRecorder:
    """``decisions`` and ``labels`` -> each terminal's history in Feast's online store.

    Attributes:
        last_label_at: epoch seconds of the last label applied (0 before any), kept in Redis
            (:data:`LAST_LABEL_KEY`) with each batch that has labels.
    """

    def __init__(
        self,
        terminals: TerminalState,
        decisions_topic: str,
        deadline_s: float,
        dead_letters: Callable[[Sequence[Rejected]], Awaitable[None]],
        shadow: tuple[Any, int] | None = None,
    ) -> None:
        """``shadow``: the Redis client and retention (ms) of the shadow comparison, whose
        transactions' labels are kept there too (:mod:`services.common.shadow_store`).
        ``dead_letters``: where labels that break the contract go (:class:`LabelDeadLetters`)."""
        self.terminals = terminals
        self.decisions_topic = decisions_topic
        self.deadline_s = deadline_s
        self.shadow = shadow
        self.dead_letters = dead_letters
        self.last_label_at = 0.0

    async def __call__(self, records: Sequence[Record]) -> None:
        """Record a batch, and send its invalid labels to the dead-letter topic.

        Raises:
            Unavailable: Redis did not answer within the deadline.
        """
        observed, labels, rejected = terminal_events(records, self.decisions_topic)
        if rejected:
            await self.dead_letters(rejected)
        if observed or labels:
            await retry(
                lambda: self.terminals.apply(observed, labels),
                "terminals",
                deadline_s=self.deadline_s,
            )
        if labels and self.shadow is not None:
            client, retention_ms = self.shadow
            await retry(
                lambda: shadow_store.record_labels(client, labels, retention_ms),
                "shadow labels",
                deadline_s=self.deadline_s,
            )
        for label in labels:
            metrics.LABELS.labels(source=label.source).inc()
        if labels:
            now = time.time()
            redis = self.terminals.client
            await retry(
                lambda: redis.set(LAST_LABEL_KEY, repr(now)),
                "last label",
                deadline_s=self.deadline_s,
            )
            self.last_label_at = now
            metrics.LAST_LABEL_APPLIED.set(now)

    async def restore(self) -> None:
        """Take the time of the last label applied by any writer before this one from Redis.

        Raises:
            redis.RedisError: Redis did not answer (the caller tries again later).
        """
        raw = await self.terminals.client.get(LAST_LABEL_KEY)
        if raw:
            self.last_label_at = max(self.last_label_at, float(raw))


class DecisionRecorder:
    """``decisions`` -> the decision store (so the store can be rebuilt from the topic)."""

    def __init__(self, store: DecisionStore, deadline_s: float) -> None:
        self.store = store
        self.deadline_s = deadline_s

    async def __call__(self, records: Sequence[Record]) -> None:
        """Store a batch's decisions (a transaction's first decision wins).

        Raises:
            Unavailable: Redis did not answer within the deadline.
        """
        raw = [r.value for r in records if r.value]
        new = await retry(lambda: self.store.put_raw(raw), "store", deadline_s=self.deadline_s)
        metrics.STORED.labels(result="new").inc(new)
        metrics.STORED.labels(result="duplicate").inc(len(raw) - new)
