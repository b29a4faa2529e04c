"""Starts, stops and reports the whole local stack in dependency order."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from services.common.settings import Settings
from services.stack.apps import our_processes
from services.stack.cluster import ClusterStack
from services.stack.kafka_broker import KafkaBroker
from services.stack.process import ManagedProcess
from services.stack.prometheus_server import prometheus_process
from services.stack.redis_server import redis_process
from services.stack.topics import ensure_topics


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``fraud status`` shows it (memory in MiB, RSS of the process tree)."""

    name: str
    address: str
    pid: int | None
    ready: bool
    rss_mib: float | None
    log: str


class Stack:
    """Kafka, Redis and Prometheus on this machine, with state under ``settings.var_dir``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._kafka = KafkaBroker(settings)

    def _processes(self, install: bool) -> list[ManagedProcess]:
        return [
            self._kafka.process(),
            redis_process(self._settings, install=install),
            prometheus_process(self._settings, install=install),
        ]

    def up(self, cluster: bool = False) -> list[tuple[str, str, float]]:
        """Install what is missing, start every service, wait for health, create topics.

        Idempotent: services already running are left alone. Returns (service, "started" |
        "running", seconds) per service, then one row per topic. ``cluster``: three Kafka
        nodes and a Redis Cluster (``services.stack.cluster``) instead of one of each, with
        Prometheus.

        Raises:
            StackError: a service could not be installed, started or reached.
        """
        if cluster:
            proc = prometheus_process(self._settings, install=True)
            began = time.monotonic()
            outcome = proc.start(self._settings.service_timeout_s)
            nodes = ClusterStack(self._settings).up()
            return [*nodes, (proc.name, outcome, time.monotonic() - began)]
        rows: list[tuple[str, str, float]] = []
        self._kafka.prepare()
        for proc in self._processes(install=True):
            began = time.monotonic()
            outcome = proc.start(self._settings.service_timeout_s)
            rows.append((proc.name, outcome, time.monotonic() - began))
        began = time.monotonic()
        for topic, outcome in ensure_topics(self._settings).items():
            rows.append((f"topic {topic}", outcome, time.monotonic() - began))
        return rows

    def down(self) -> list[tuple[str, bool]]:
        """Stop our applications, then every service, in reverse order.

        Returns:
            (process, was running) for each.
        """
        apps = list(reversed(our_processes(self._settings)))
        procs = apps + list(reversed(self._processes(install=False)))
        stopped = [(proc.name, proc.stop()) for proc in procs]
        cluster = [p for p in self._cluster_processes() if p.pid() is not None]
        return stopped + [(p.name, p.stop()) for p in reversed(cluster)]

    def _cluster_processes(self) -> list[ManagedProcess]:
        if self._settings.kafka.security_protocol != "PLAINTEXT":
            return []
        return ClusterStack(self._settings).processes()

    def status(self) -> list[ServiceStatus]:
        """Pid, readiness and resident memory of each service; then of the scorer, the
        recorder and the API when ``fraud demo`` (or anyone through ``services.stack.apps``)
        started them, and of the cluster's nodes when any of them runs (``fraud up
        --cluster``)."""
        out = []
        apps = our_processes(self._settings)
        cluster = self._cluster_processes()
        if not any(p.pid() is not None for p in cluster):
            cluster = []
        # started, and running or gone without being stopped (a crash shows as down)
        started = [p for p in apps if p.pid_file.exists() or p.died_file.exists()]
        for proc in self._processes(install=False) + started + cluster:
            pid = proc.pid()
            out.append(
                ServiceStatus(
                    name=proc.name,
                    address=f"{proc.host}:{proc.port}",
                    pid=pid,
                    ready=pid is not None and proc.is_ready(),
                    rss_mib=_rss_mib(pid) if pid else None,
                    log=str(proc.log_file),
                )
            )
        return out


def _rss_mib(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return None
