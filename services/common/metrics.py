"""Serving /metrics and registering it with the local Prometheus.

Each process calls :func:`serve_metrics` once. The endpoint is announced through Prometheus's
file-based service discovery: a JSON target file under ``var/prometheus/targets`` that the
Prometheus of ``fraud up`` reads every 5 s. Knows nothing of which metrics a process exports.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, start_http_server

from services.common.settings import Settings


@dataclass
class MetricsEndpoint:
    """A running /metrics server and its discovery file."""

    host: str
    port: int
    target_file: Path
    _server: object

    def close(self) -> None:
        """Stop serving and withdraw the target (idempotent)."""
        self.target_file.unlink(missing_ok=True)
        shutdown = getattr(self._server, "shutdown", None)
        if shutdown is not None:
            shutdown()


def serve_metrics(
    settings: Settings,
    service: str,
    port: int = 0,
    host: str = "127.0.0.1",
    registry: CollectorRegistry = DEFAULT_REGISTRY,
) -> MetricsEndpoint:
    """Serve ``registry`` on ``http://host:port/metrics`` and register it for scraping.

    Args:
        service: the ``service`` label Prometheus attaches (scorer, api, producer, ...).
        port: 0 picks a free port.

    Returns:
        The endpoint; its target file is removed at exit.

    Raises:
        OSError: the port is taken.
    """
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_port)
    announced = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # all: the loopback too
    target_file = register_target(settings, service, announced, bound)
    endpoint = MetricsEndpoint(host=host, port=bound, target_file=target_file, _server=server)
    atexit.register(endpoint.close)
    return endpoint


def register_target(settings: Settings, service: str, host: str, port: int) -> Path:
    """Announce ``http://host:port/metrics`` to Prometheus (file-based discovery); the file is
    removed at exit. Returns its path."""
    targets = settings.targets_dir
    targets.mkdir(parents=True, exist_ok=True)
    target_file = targets / f"{service}-{port}.json"
    entry = [
        {"targets": [f"{host}:{port}"], "labels": {"service": service, "pid": str(os.getpid())}}
    ]
    tmp = target_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(target_file)  # Prometheus must never read a half-written file
    atexit.register(lambda: target_file.unlink(missing_ok=True))
    return target_file
