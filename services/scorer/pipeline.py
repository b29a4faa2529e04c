"""One micro-batch of ``transactions`` records from bytes to published decisions.

validate -> features, model, policy (:class:`~services.scorer.scoring.Scorer`) -> publish to
``decisions``, or dead-letter to ``transactions.dlq`` with the reason (a record that breaks
the contract, or a transaction id already used with other content). Publishing goes through
the :class:`~services.scorer.ports.Publisher` handed in; the pipeline returns the batch's
delivery, and the caller's checkpoint commits the batch's offsets only once it completes.
Knows nothing of consumer groups, offsets or Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from services.common.decision import Decision
from services.common.events import (
    InvalidEvent,
    Transaction,
    check_record_key,
    mask_card_numbers,
    parse_transaction,
    redact_payload,
)
from services.scorer import metrics
from services.scorer.ports import Publisher, Record
from services.scorer.scoring import Scorer

log = logging.getLogger("fraud.scorer")

Rejected = tuple[Record, InvalidEvent]
DEAD_LETTER_HEADERS = ("reason", "detail", "source")
"""The headers a dead letter starts with (:func:`send_dead_letters`)."""


def validate(records: Sequence[Record]) -> tuple[list[tuple[Record, Transaction]], list[Rejected]]:
    """Split records into (record, transaction) pairs and (record, why) rejects, in order."""
    valid, rejected = [], []
    for record in records:
        value = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
        try:
            check_record_key(record.key)
            valid.append((record, parse_transaction(value)))
        except InvalidEvent as error:
            rejected.append((record, error))
        except Exception as error:
            # a bug of the validator: the record goes to the dead-letter topic, not in a loop
            log.exception("validator_failed offset=%s", record.offset)
            why = InvalidEvent("unreadable", f"the validator failed: {type(error).__name__}")
            rejected.append((record, why))
    return valid, rejected


async def send_dead_letters(
    publisher: Publisher,
    topic: str,
    rejects: Sequence[Rejected],
    counter: Any = metrics.DEAD_LETTERS,
) -> list[Any]:
    """Send rejected records to the dead-letter ``topic``: the original key, value and
    headers with any card number masked (:func:`redact_payload`; a null key or value stays
    null), after three headers of ours: the reason, its detail and the source
    (``topic/partition/offset``). An original header named like one of ours is kept as
    ``original.<name>``. Counts each by reason in ``counter`` as it is sent (default
    ``fraud_dead_letters_total``, the rejected transactions; None: the caller counts).

    Returns:
        Their delivery futures.
    """
    futures = []
    for record, error in rejects:
        source = f"{record.topic}/{record.partition}/{record.offset}"
        ours = (error.reason, error.detail, source)
        headers: list[tuple[str, bytes | None]] = [
            (name, text.encode()) for name, text in zip(DEAD_LETTER_HEADERS, ours, strict=True)
        ]
        for name, original in record.headers or ():
            name = mask_card_numbers(name)
            headers.append(
                (
                    f"original.{name}" if name in DEAD_LETTER_HEADERS else name,
                    None if original is None else redact_payload(bytes(original)),
                )
            )
        key = None if record.key is None else redact_payload(record.key)
        value = None if record.value is None else redact_payload(bytes(record.value))
        futures.append(await publisher.send(topic, key=key, value=value, headers=headers))
        if counter is not None:
            counter.labels(reason=error.reason.split(":")[0]).inc()
        log.warning("dead_letter reason=%s source=%s", error.reason, source)
    return futures


class ScoringPipeline:
    """Decides micro-batches of ``transactions`` records and publishes the outcome.

    Args:
        scorer: features, model and policy.
        publisher: where decisions and dead letters go.
        decisions_topic, dead_letter_topic: their names.
    """

    def __init__(
        self, scorer: Scorer, publisher: Publisher, decisions_topic: str, dead_letter_topic: str
    ) -> None:
        self.scorer = scorer
        self.publisher = publisher
        self.decisions_topic = decisions_topic
        self.dead_letter_topic = dead_letter_topic

    async def __call__(self, records: Sequence[Record]) -> asyncio.Future[Any]:
        """Decide ``records`` and publish a decision or a dead letter for each.

        Returns:
            The batch's delivery: completes once the broker acknowledged every record.

        Raises:
            Exception: the publisher refused a record (nothing of the batch may be committed).
        """
        valid, rejects = validate(records)
        futures = []
        decided: list[tuple[Record, str]] = []
        if valid:
            sent, reused, decided = await self._decide(valid)
            futures += sent
            rejects += reused
        metrics.RECEIVED.labels(result="valid").inc(len(records) - len(rejects))
        metrics.RECEIVED.labels(result="invalid").inc(len(rejects))
        futures += await self.dead_letter(rejects)
        delivery = asyncio.gather(*futures)

        def delivered(outcome: asyncio.Future[Any]) -> None:
            # a decision counts once the broker has it (the availability SLO's good events:
            # a batch whose delivery fails, or a worker that dies before, counts as valid
            # transactions not decided; its redecision after the rewind counts again)
            if outcome.cancelled() or outcome.exception() is not None:
                return
            now = time.time()
            for record, decision_outcome in decided:
                metrics.DECISIONS.labels(outcome=decision_outcome).inc()
                metrics.E2E_LATENCY.observe(max(now - record.timestamp / 1000, 0.0))

        delivery.add_done_callback(delivered)
        return delivery

    async def dead_letter(self, rejects: Sequence[Rejected]) -> list[Any]:
        """Send rejected records to the dead-letter topic (:func:`send_dead_letters`).

        Returns:
            Their delivery futures.
        """
        return await send_dead_letters(self.publisher, self.dead_letter_topic, rejects)

    async def _decide(
        self, valid: list[tuple[Record, Transaction]]
    ) -> tuple[list[Any], list[Rejected], list[tuple[Record, str]]]:
        """Decide ``valid`` pairs and publish the decisions.

        Returns:
            The delivery futures; the records whose transaction id was already used with
            other content (for the dead-letter topic); each decided record and its outcome.
        """
        scorer = self.scorer
        decided = await scorer.decide([tx for _, tx in valid])
        reused: list[Rejected] = []
        pairs: list[tuple[Record, Decision]] = []
        for (record, tx), decision in zip(valid, decided, strict=True):
            if decision is None:
                detail = f"transaction {tx.transaction_id} was already used with other content"
                reused.append((record, InvalidEvent("reused_transaction_id", detail)))
            else:
                pairs.append((record, decision))
        self._observe(len(valid), [decision for _, decision in pairs])
        began = time.perf_counter()
        futures = []
        for record, decision in pairs:
            decision.kafka_timestamp_ms = record.timestamp
            if decision.score is not None:
                metrics.SCORES.observe(decision.score)
            if decision.shadow is not None:
                metrics.SHADOW_DECISIONS.labels(
                    champion=decision.model_version,
                    challenger=decision.shadow.model_version,
                    outcome=decision.outcome,
                    shadow_outcome=decision.shadow.outcome,
                ).inc()
            futures.append(
                await self.publisher.send(
                    self.decisions_topic,
                    key=decision.transaction_id.encode(),
                    value=decision.encode(),
                )
            )
        metrics.STAGE_LATENCY.labels(stage="publish").observe(time.perf_counter() - began)
        return futures, reused, [(record, decision.outcome) for record, decision in pairs]

    def _observe(self, batch_size: int, decisions: list[Decision]) -> None:
        """The batch's stage timings, size and degraded-mode gauges."""
        scorer = self.scorer
        stages = scorer.stages
        for stage, seconds in (
            ("features", stages.features),
            ("model", stages.model),
            ("policy", stages.policy),
        ):
            metrics.STAGE_LATENCY.labels(stage=stage).observe(seconds)
        metrics.BATCH_SIZE.observe(batch_size)
        degraded = sum(1 for decision in decisions if decision.degraded)
        metrics.DEGRADED_MODE.set(1 if degraded else 0)
        metrics.DEGRADED.inc(degraded)
        metrics.STATE_BACKLOG.set(len(scorer.pending))
        metrics.STATE_DROPPED.set(scorer.dropped)
