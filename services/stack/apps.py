"""Our own long-running processes, managed like the services: the scoring worker, the
recording worker and the API."""

from __future__ import annotations

import sys

import requests

from services.common.settings import PROJECT_ROOT, Settings
from services.stack.process import ManagedProcess


def scorer_process(settings: Settings) -> ManagedProcess:
    """``fraud score`` as a managed process, ready once it owns partitions and has a model."""
    port = settings.scorer.metrics_port

    def ready() -> bool:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
        owned = [
            line
            for line in text.splitlines()
            if line.startswith("fraud_scorer_assigned_partitions ")
        ]
        has_model = any(line.startswith("fraud_model_info{") for line in text.splitlines())
        return bool(owned) and float(owned[0].split()[1]) > 0 and has_model

    return ManagedProcess(
        name="scorer",
        argv=[sys.executable, "-m", "services.cli", "score"],
        host="127.0.0.1",
        port=port,
        port_setting="FRAUD_SCORER__METRICS_PORT",
        ready=ready,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        cwd=PROJECT_ROOT,
    )


def recorder_process(settings: Settings) -> ManagedProcess:
    """``fraud record`` as a managed process, ready once it owns partitions of ``decisions``
    (the decision store's group; alone, it also owns every partition of the terminals')."""
    port = settings.recorder.metrics_port

    def ready() -> bool:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
        owned = [
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("fraud_recorder_assigned_partitions{")
        ]
        return sum(owned) > 0

    return ManagedProcess(
        name="recorder",
        argv=[sys.executable, "-m", "services.cli", "record"],
        host="127.0.0.1",
        port=port,
        port_setting="FRAUD_RECORDER__METRICS_PORT",
        ready=ready,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        cwd=PROJECT_ROOT,
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

    return ManagedProcess(
        name="api",
        argv=[sys.executable, "-m", "services.cli", "api"],
        host=cfg.host,
        port=cfg.port,
        port_setting="FRAUD_API__PORT",
        ready=ready,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        cwd=PROJECT_ROOT,
    )
