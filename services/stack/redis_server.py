"""The local Redis server: Debian's redis-server, append-only persistence under var/redis.

With ``FRAUD_REDIS__USERNAME``/``PASSWORD`` set, the server loads an ACL file
(``var/redis/users.acl``, mode 0600, the password stored as its SHA-256 as Redis's ACL
syntax allows) in which that user may do everything and the ``default`` user is off.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.common.connections import redis_client
from services.common.settings import RedisSettings, Settings
from services.stack.install import ensure_program
from services.stack.process import ManagedProcess, write_private

PERSISTENCE = (
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    # Each decision stores itself (1.4 KB) and rewrites its card's history (up to about
    # 3 KB): the log grew 1.5 KB per transaction on fresh simulator cards, and with Redis's
    # 64 MB default a rewrite (a fork, then a core for 1.2-1.6 s here) came every minute or
    # two under the benchmark, when every decision in flight waited. Rewrite past 1 GB instead.
    "--auto-aof-rewrite-min-size",
    "1gb",
    "--save",
    "",
)
"""How the stack's Redis persists: an append-only file written every second, no snapshots."""


def acl_rules(cfg: RedisSettings) -> str | None:
    """The ACL file for the configured credentials, or None when none are set.

    A username gets a user with every key, channel and command, and turns ``default`` off;
    a password alone protects ``default``. (Redis ACL syntax: ``#<sha256 hex>`` is a hashed
    password, ``~*`` all keys, ``&*`` all channels, ``+@all`` all commands.)
    """
    if cfg.password is None:
        return None
    digest = hashlib.sha256(cfg.password.get_secret_value().encode()).hexdigest()
    grants = f"on #{digest} ~* &* +@all"
    if cfg.username is None or cfg.username == "default":
        return f"user default {grants}\n"
    return f"user default off\nuser {cfg.username} {grants}\n"


def server_argv(program: str, host: str, port: int, data: Path, *extra: str) -> list[str]:
    """The command line of one of the stack's Redis servers: in the foreground, logging to
    standard output, state and :data:`PERSISTENCE` in ``data``, then ``extra``."""
    return [
        program,
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data),
        *PERSISTENCE,
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        "",
        *extra,
    ]


def redis_process(settings: Settings, install: bool = True) -> ManagedProcess:
    """Redis on ``FRAUD_REDIS__HOST:PORT``, ready once it answers PING.

    Raises:
        StackError: redis-server is missing and cannot be installed.
    """
    cfg = settings.redis
    data = settings.var_dir / "redis"
    program = ensure_program("redis-server", "redis-server") if install else "redis-server"
    rules = acl_rules(cfg)
    acl_file = data / "users.acl" if rules is not None else None

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)
        if acl_file is not None and rules is not None:
            write_private(acl_file, rules)

    def ping() -> bool:
        client = redis_client(cfg, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ManagedProcess(
        name="redis",
        argv=server_argv(
            program,
            cfg.host,
            cfg.port,
            data,
            *(["--aclfile", str(acl_file)] if acl_file else []),
        ),
        host=cfg.host,
        port=cfg.port,
        port_setting="FRAUD_REDIS__PORT",
        ready=ping,
        run_dir=settings.var_dir / "run",
        log_dir=settings.var_dir / "log",
        prepare=prepare,
    )
