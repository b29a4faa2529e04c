"""The local Prometheus server: Debian's prometheus with infra/prometheus/prometheus.yml."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import PROJECT_ROOT, Settings
from services.stack.install import ensure_program
from services.stack.process import ManagedProcess

INFRA = PROJECT_ROOT / "infra" / "prometheus"


def config_path(settings: Settings) -> Path:
    """Where :func:`render_config` writes Prometheus's configuration."""
    return settings.var_dir / "prometheus" / "prometheus.yml"


def render_config(settings: Settings) -> Path:
    """Write ``var/prometheus/prometheus.yml`` from the template; return its path."""
    settings.targets_dir.mkdir(parents=True, exist_ok=True)
    text = (INFRA / "prometheus.yml").read_text()
    for key, value in {
        "@TARGETS_DIR@": str(settings.targets_dir),
        "@RULES_DIR@": str(INFRA / "rules"),
        "@PROMETHEUS_ADDRESS@": f"{settings.prometheus.host}:{settings.prometheus.port}",
    }.items():
        text = text.replace(key, value)
    config = config_path(settings)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def prometheus_process(settings: Settings, install: bool = True) -> ManagedProcess:
    """Prometheus on ``FRAUD_PROMETHEUS__HOST:PORT``, ready once ``/-/ready`` answers 200.

    Raises:
        StackError: prometheus is missing and cannot be installed.
    """
    import requests

    cfg = settings.prometheus
    program = ensure_program("prometheus", "prometheus") if install else "prometheus"
    config = config_path(settings)

    def ready() -> bool:
        return requests.get(f"{cfg.url}/-/ready", timeout=1).status_code == 200

    def prepare() -> None:
        render_config(settings)

    return ManagedProcess(
        name="prometheus",
        argv=[
            program,
            f"--config.file={config}",
            f"--storage.tsdb.path={settings.var_dir / 'prometheus' / 'data'}",
            f"--web.listen-address={cfg.host}:{cfg.port}",
            # 31 days: the SLO's error budget is over 30 (no --web.enable-lifecycle: any web
            # page the user opens could POST /-/quit to it)
            "--storage.tsdb.retention.time=31d",
        ],
        host=cfg.host,
        port=cfg.port,
        port_setting="FRAUD_PROMETHEUS__PORT",
        ready=ready,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        prepare=prepare,
    )
