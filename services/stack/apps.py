"""Our own long-running processes, managed like the services: the scoring worker, the
recording worker and the API."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import requests

from services.common.settings import PROJECT_ROOT, Settings
from services.stack.errors import StackError
from services.stack.process import ManagedProcess


def _fraud_process(
    settings: Settings,
    name: str,
    command: str,
    host: str,
    port: int,
    port_setting: str,
    ready: Callable[[], bool],
) -> ManagedProcess:
    """``fraud <command>`` as a managed process, its pid file and log under ``var/``."""
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "services.cli", command],
        host=host,
        port=port,
        port_setting=port_setting,
        ready=ready,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        cwd=PROJECT_ROOT,
    )


def _metric_lines(port: int) -> list[str]:
    """The lines of a worker's ``/metrics`` page on this machine."""
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text.splitlines()


def scorer_process(settings: Settings) -> ManagedProcess:
    """``fraud score`` as a managed process, ready once it owns partitions and has a model."""
    port = settings.scorer.metrics_port

    def ready() -> bool:
        lines = _metric_lines(port)
        owned = [line for line in lines if line.startswith("fraud_scorer_assigned_partitions ")]
        has_model = any(line.startswith("fraud_model_info{") for line in lines)
        return bool(owned) and float(owned[0].split()[1]) > 0 and has_model

    return _fraud_process(
        settings, "scorer", "score", "127.0.0.1", port, "FRAUD_SCORER__METRICS_PORT", ready
    )


def recorder_process(settings: Settings) -> ManagedProcess:
    """``fraud record`` as a managed process, ready once it owns partitions of ``decisions``
    (the decision store's group; alone, it also owns every partition of the terminals')."""
    port = settings.recorder.metrics_port

    def ready() -> bool:
        owned = [
            float(line.split()[1])
            for line in _metric_lines(port)
            if line.startswith("fraud_recorder_assigned_partitions{")
        ]
        return sum(owned) > 0

    return _fraud_process(
        settings, "recorder", "record", "127.0.0.1", port, "FRAUD_RECORDER__METRICS_PORT", ready
    )


def our_processes(settings: Settings) -> list[ManagedProcess]:
    """What ``fraud demo`` starts, in order: the scoring worker, the recording worker, the
    API."""
    return [scorer_process(settings), recorder_process(settings), api_process(settings)]


def api_process(settings: Settings) -> ManagedProcess:
    """``fraud api`` as a managed process, ready once ``/readyz`` answers 200."""
    cfg = settings.api

    def ready() -> bool:
        return requests.get(f"http://{cfg.host}:{cfg.port}/readyz", timeout=1).status_code == 200

    return _fraud_process(settings, "api", "api", cfg.host, cfg.port, "FRAUD_API__PORT", ready)


def start_apps(settings: Settings) -> list[tuple[str, str, float]]:
    """Start the scoring worker, the recording worker and the API (those not running), each
    ready before the next (``fraud up --apps``). The stack must be up.

    Returns:
        (process, "started" | "running", seconds) for each.

    Raises:
        StackError: no model is active (the scorer would never be ready: ``fraud train``, or
            ``fraud demo``, trains one), or a process did not start (its log's last lines).
    """
    from models.registry import ModelRegistry

    if ModelRegistry(settings.models_dir).active() is None:
        raise StackError(
            f"no active model in {settings.models_dir}: the scorer needs one. `fraud train` "
            "trains one (or `fraud demo`, which also replays a week)"
        )
    rows = []
    for proc in our_processes(settings):
        began = time.monotonic()
        outcome = proc.start(settings.service_timeout_s)
        rows.append((proc.name, outcome, time.monotonic() - began))
    return rows
