"""Schemathesis against a live ``fraud api``: no 5xx, every response as the schema says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from services.api.keys import create_key
from services.common.settings import PROJECT_ROOT, Settings
from services.stack.topics import ensure_topics
from tests.conftest import TrainedModel, free_port, wait_for

pytestmark = pytest.mark.e2e
SCHEMA_REDIS_DB = 4
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


@pytest.fixture(scope="module")
def live_api(
    trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory, kafka: str, redis_url: str
) -> Iterator[tuple[str, str]]:
    var_dir = tmp_path_factory.mktemp("schema-var")
    shutil.copytree(trained.settings.models_dir, var_dir / "models")  # promotions stay here
    port = free_port()
    env = {
        "FRAUD_VAR_DIR": str(var_dir),
        "FRAUD_REDIS__DB": str(SCHEMA_REDIS_DB),
        "FRAUD_TOPICS__PREFIX": f"schema{uuid.uuid4().hex[:8]}.",
        "FRAUD_API__PORT": str(port),
    }
    settings = Settings(
        var_dir=var_dir,
        redis={"db": SCHEMA_REDIS_DB},
        topics={"prefix": env["FRAUD_TOPICS__PREFIX"]},
    )
    ensure_topics(settings)
    client = redis.Redis(port=settings.redis.port, db=SCHEMA_REDIS_DB)
    client.flushdb()
    key = create_key(client, "schemathesis", "admin")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "api"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 60, "fraud api to answer")
    yield url, key
    proc.terminate()
    proc.wait(timeout=30)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live_api: tuple[str, str], tmp_path: Path
) -> None:
    url, key = live_api
    report = tmp_path / "schemathesis.txt"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"X-API-Key: {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "passed" in result.stdout.lower()
