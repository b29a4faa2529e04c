"""Consumer lag of the workers' groups from the broker's side: committed offsets against the
log end, as an outside lag exporter reads it (Burrow, kafka-lag-exporter).

The scoring worker reports its own lag (``fraud_consumer_lag_records``, position against the
high watermark), but only while its loop runs: a worker stalled in a call reports the last
figure it had, and the recording worker's groups reported none. The admin API, which runs
beside them, reads each group's committed offsets at every scrape of its ``/metrics``:

    fraud_consumer_group_lag_records{task, topic, partition}
        log end offset minus the group's committed offset (minus the log start offset where
        the group has committed nothing on the partition: all of it is still to read)

for ``task`` = ``scorer`` (group ``<app id>``, topic ``transactions``), ``terminals``
(``<app id>-terminals``: ``decisions`` and ``labels``) and ``store`` (``<app id>-store``:
``decisions``). Offsets are committed after the records' effects (at most every 0.5 s in the
recording worker, after delivery in the scorer), so the lag includes at most that much.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from services.common.errors import Unavailable
from services.common.settings import Settings

GROUP_LAG = Gauge(
    "fraud_consumer_group_lag_records",
    "Records of the partition after the group's committed offset (log end minus committed), "
    "read from the broker by the admin API at each scrape.",
    ["task", "topic", "partition"],
)


STALE_AFTER_S = 60.0
"""How long the last figures stand in for reads that fail, in seconds."""


@dataclass(frozen=True)
class GroupSpec:
    """A worker group: what it does, its id and the topics it consumes."""

    task: str
    group: str
    topics: tuple[str, ...]


def worker_groups(settings: Settings) -> list[GroupSpec]:
    """The consumer groups of the scoring and recording workers (``services.scorer.worker``)."""
    app_id, topics = settings.scorer.app_id, settings.topics
    return [
        GroupSpec("scorer", app_id, (topics.transactions.name,)),
        GroupSpec("terminals", f"{app_id}-terminals", (topics.decisions.name, topics.labels.name)),
        GroupSpec("store", f"{app_id}-store", (topics.decisions.name,)),
    ]


class GroupLag:
    """Reads the groups' lag through one kafka-python admin client, opened on first use and
    again after an error. Blocking: call :meth:`read` from a worker thread."""

    def __init__(self, settings: Settings, timeout_s: float = 2.0) -> None:
        self.settings = settings
        self.timeout_ms = int(timeout_s * 1000)
        self._admin: Any = None
        self._lock = threading.Lock()
        self._last_read = -math.inf  # time.monotonic() of the last read that succeeded
        self.clock = time.monotonic

    def read(self) -> dict[tuple[str, str, int], int]:
        """(task, topic, partition) -> records after the committed offset.

        Raises:
            Unavailable: an earlier read is still waiting on the broker (a scrape does not
                queue behind it: each would hold a worker thread the API's routes need).
            kafka.errors.KafkaError: the broker did not answer (the client is closed, and a
                new one is opened at the next call).
        """
        if not self._lock.acquire(blocking=False):
            raise Unavailable("consumer group lag: the last read is still waiting on Kafka")
        try:
            return self._read()
        except Exception:
            self.close()
            raise
        finally:
            self._lock.release()

    def _read(self) -> dict[tuple[str, str, int], int]:
        from kafka import KafkaAdminClient, TopicPartition
        from kafka.admin import OffsetSpec

        from services.common.connections import kafka_python_kwargs

        if self._admin is None:
            self._admin = KafkaAdminClient(
                **kafka_python_kwargs(self.settings.kafka),
                client_id="fraud-api-lag",
                request_timeout_ms=self.timeout_ms,
                bootstrap_timeout_ms=self.timeout_ms,  # a broker away: fail, not hang
            )
        admin, groups = self._admin, worker_groups(self.settings)
        topics = sorted({t for g in groups for t in g.topics})
        described = admin.describe_topics(topics)
        partitions = [
            TopicPartition(t["name"], p["partition_index"])
            for t in described
            if not t.get("error_code")
            for p in t["partitions"]
        ]
        end = admin.list_partition_offsets(
            dict.fromkeys(partitions, OffsetSpec.LATEST), timeout_ms=self.timeout_ms
        )
        start = admin.list_partition_offsets(
            dict.fromkeys(partitions, OffsetSpec.EARLIEST), timeout_ms=self.timeout_ms
        )
        committed = admin.list_group_offsets({g.group: None for g in groups})
        lag = {}
        for spec in groups:
            offsets = committed.get(spec.group) or {}
            for tp in partitions:
                if tp.topic not in spec.topics:
                    continue
                log_end, log_start = end[tp].offset, start[tp].offset
                done = offsets.get(tp)
                at = done.offset if done is not None and done.offset >= 0 else log_start
                lag[(spec.task, tp.topic, tp.partition)] = max(log_end - max(at, log_start), 0)
        return lag

    def export(self) -> None:
        """Read the lag and set :data:`GROUP_LAG` to it (only the partitions read now).

        A failed read keeps the last figures while they are under :data:`STALE_AFTER_S`
        old (one slow read must not drop the series: Prometheus would reset the ``for:`` of
        the lag alerts), then empties the gauge: no figure is better than a stale one.

        Raises:
            Unavailable, kafka.errors.KafkaError: as :meth:`read`.
        """
        try:
            lag = self.read()
        except Exception:
            if self.clock() - self._last_read > STALE_AFTER_S:
                GROUP_LAG.clear()
            raise
        self._last_read = self.clock()
        GROUP_LAG.clear()
        for (task, topic, partition), behind in lag.items():
            GROUP_LAG.labels(task=task, topic=topic, partition=str(partition)).set(behind)

    def close(self) -> None:
        """Close the admin client, if one is open."""
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # a client that already failed
                admin.close()
