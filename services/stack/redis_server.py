"""The local Redis server: Debian's redis-server, append-only persistence under var/redis."""

from __future__ import annotations

from services.common.settings import Settings
from services.stack.install import ensure_program
from services.stack.process import ManagedProcess


def redis_process(settings: Settings, install: bool = True) -> ManagedProcess:
    """Redis on ``FRAUD_REDIS__HOST:PORT``, ready once it answers PING.

    Raises:
        StackError: redis-server is missing and cannot be installed.
    """
    cfg = settings.redis
    data = settings.var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    program = ensure_program("redis-server", "redis-server") if install else "redis-server"

    def ping() -> bool:
        import redis

        client = redis.Redis(host=cfg.host, port=cfg.port, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ManagedProcess(
        name="redis",
        argv=[
            program,
            "--bind",
            cfg.host,
            "--port",
            str(cfg.port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "",
        ],
        host=cfg.host,
        port=cfg.port,
        port_setting="FRAUD_REDIS__PORT",
        ready=ping,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
    )
