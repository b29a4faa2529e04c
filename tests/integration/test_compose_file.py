"""docker-compose.yml against the Compose specification's JSON schema (no Docker engine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from services.common.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def test_compose_file_passes_the_compose_spec_schema() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_whole_stack_with_healthchecks() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("kafka", "redis", "prometheus", "grafana", "scorer", "api", "producer"):
        assert name in services, name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("kafka", "redis", "prometheus", "grafana", "scorer"):
        assert "healthcheck" in services[name], name
    for name in ("scorer", "api", "producer"):
        assert services[name]["build"] == "." and (PROJECT_ROOT / "Dockerfile").exists()
        assert all(k.startswith("FRAUD_") for k in services[name]["environment"])
    from services.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("topics", "scorer", "api", "train", "producer"):
        assert services[name]["command"][0] in commands, name
