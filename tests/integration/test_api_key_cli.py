"""``fraud api-key`` on the real Redis (a private database): create, list, revoke by id as the
command table says, and an unknown or missing id fails with a message, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from services.common.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration
DB = 14


def _fraud(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRAUD_REDIS__DB": str(DB)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "api-key", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_key_is_revoked_by_its_id(redis_url: str, settings: Settings) -> None:
    client = redis.Redis(host=settings.redis.host, port=settings.redis.port, db=DB)
    client.flushdb()
    try:
        created = _fraud("create", "--role", "viewer", "--name", "cli-test", "--quiet")
        assert created.returncode == 0, created.stderr
        key_id = created.stdout.strip().split("_")[1]  # fd_<id>_<secret>
        listed = _fraud("list")
        assert key_id in listed.stdout and "cli-test" in listed.stdout
        revoked = _fraud("revoke", key_id)
        assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked {key_id}")
        assert key_id not in _fraud("list").stdout
        again = _fraud("revoke", key_id)
        assert again.returncode == 1 and "no such key" in again.stderr
        missing = _fraud("revoke")
        assert missing.returncode == 2 and "KEY_ID" in missing.stderr
        assert "Traceback" not in again.stderr + missing.stderr
    finally:
        client.flushdb()


def test_a_whole_key_is_revoked_by_its_id_and_never_printed(
    redis_url: str, settings: Settings
) -> None:
    """A leaked key is often all its holder has: ``revoke`` takes it whole, and its secret
    shows in no output (it used to answer "no such key: fd_<id>_<secret>")."""
    client = redis.Redis(host=settings.redis.host, port=settings.redis.port, db=DB)
    client.flushdb()
    try:
        key = _fraud("create", "--role", "viewer", "--name", "leaked", "--quiet").stdout.strip()
        key_id, secret = key.split("_")[1:]
        revoked = _fraud("revoke", key)
        assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked {key_id}")
        assert client.hget("api:keys", key_id) is None
        again = _fraud("revoke", key)
        assert again.returncode == 1 and "no such key" in again.stderr
        assert secret not in revoked.stdout + revoked.stderr + again.stdout + again.stderr
    finally:
        client.flushdb()
