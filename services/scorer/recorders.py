"""What the recording worker does with a batch of records: the terminals' history and the
decision store. Each effect is idempotent by transaction id, so a batch repeated after a crash
changes nothing; each returns only once its effect is durable (the caller commits after it).

Redis errors are retried by :func:`services.common.errors.retry` (retryable errors only, up to
the deadline, then :class:`~services.common.errors.Unavailable`). Knows nothing of consumer
groups.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from services.common import shadow_store
from services.common.decision import decode_where
from services.common.decision_store import DecisionStore
from services.common.errors import retry
from services.common.events import InvalidEvent, Label, parse_label
from services.scorer import metrics
from services.scorer.ports import Record
from services.scorer.terminal_state import Observed, TerminalState

log = logging.getLogger("fraud.scorer")


def terminal_events(
    records: Sequence[Record], decisions_topic: str
) -> tuple[list[Observed], list[Label]]:
    """Split ``decisions`` and ``labels`` records into what the terminals record: decided
    transactions, and labels (an invalid label is logged and skipped)."""
    observed, labels = [], []
    for record in records:
        if record.topic == decisions_topic:
            observed.append(Observed(*decode_where(record.value or b"")))
            continue
        try:
            labels.append(parse_label(record.value or b""))
        except InvalidEvent as error:
            log.warning("label_rejected reason=%s offset=%s", error.reason, record.offset)
        except Exception:
            log.exception("label_rejected reason=unreadable offset=%s", record.offset)
    return observed, labels


class TerminalRecorder:
    """``decisions`` and ``labels`` -> each terminal's history in Feast's online store.

    Attributes:
        last_label_at: epoch seconds of the last label applied (0 before any).
    """

    def __init__(
        self,
        terminals: TerminalState,
        decisions_topic: str,
        deadline_s: float,
        shadow: tuple[Any, int] | None = None,
    ) -> None:
        """``shadow``: the Redis client and retention (ms) of the shadow comparison, whose
        transactions' labels are kept there too (:mod:`services.common.shadow_store`)."""
        self.terminals = terminals
        self.decisions_topic = decisions_topic
        self.deadline_s = deadline_s
        self.shadow = shadow
        self.last_label_at = 0.0

    async def __call__(self, records: Sequence[Record]) -> None:
        """Record a batch.

        Raises:
            Unavailable: Redis did not answer within the deadline.
        """
        observed, labels = terminal_events(records, self.decisions_topic)
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
            self.last_label_at = time.time()
            metrics.LAST_LABEL_APPLIED.set(self.last_label_at)


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
