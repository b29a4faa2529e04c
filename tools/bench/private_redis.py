"""A throw-away ``redis-server`` for measurements: a free port, a temporary folder, the
server's default encodings (as the stack's Redis); stopped on exit. No persistence, unless
asked for the stack's (:data:`services.stack.redis_server.PERSISTENCE`).

Memory measurements need a server of their own: ``INFO memory`` counts every database, and the
stack's Redis holds other state that must not be flushed. Per-command latency tracking is off:
Redis 7 allocates a histogram (24 KiB) the first time each command runs, which showed up in
``used_memory`` deltas as memory of whatever keys were measured then.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.stack.install import ensure_program
from services.stack.process import free_port, free_ports, port_open, tail, write_private
from services.stack.redis_server import PERSISTENCE

START_TIMEOUT_S = 10.0


@contextmanager
def private_redis(persistent: bool = False, acl: str | None = None) -> Iterator[int]:
    """Start Debian's redis-server on a free port of 127.0.0.1; yield the port.

    Args:
        persistent: persist as the stack's Redis does (append-only file, in the temporary
            folder).
        acl: an ACL file's content (:func:`services.stack.redis_server.acl_rules`), for the
            same credentials as the stack's Redis.

    Raises:
        services.stack.errors.StackError: redis-server is missing and cannot be installed.
        TimeoutError: the server did not accept connections within :data:`START_TIMEOUT_S`.
    """
    program = ensure_program("redis-server", "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fraud-redis-") as folder:
        log = Path(folder) / "redis.log"
        argv = [program, "--bind", "127.0.0.1", "--port", str(port), "--dir", folder]
        if persistent:
            argv += PERSISTENCE
        else:
            argv += ["--save", "", "--appendonly", "no"]
        argv += ["--latency-tracking", "no"]
        if acl is not None:
            acl_file = Path(folder) / "users.acl"
            write_private(acl_file, acl)
            argv += ["--aclfile", str(acl_file)]
        argv += ["--daemonize", "no", "--logfile", str(log)]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not port_open("127.0.0.1", port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {port} did not start:\n{tail(log)}")
                time.sleep(0.05)
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def private_redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """A throw-away Redis Cluster of ``masters`` redis-servers in cluster mode (no replicas,
    no persistence) on free ports of 127.0.0.1, its slots assigned by ``redis-cli --cluster
    create``; yields the ports. Stopped on exit.

    Raises:
        services.stack.errors.StackError: redis-server or redis-cli is missing and cannot be
            installed.
        TimeoutError: a node did not start, or the cluster did not reach state ``ok``.
    """
    program = ensure_program("redis-server", "redis-server")
    cli = ensure_program("redis-cli", "redis-tools")
    # data and bus ports chosen together: a bus port chosen apart once took another node's
    # data port ("Address already in use")
    chosen = free_ports(2 * masters)
    ports, bus_ports = chosen[:masters], chosen[masters:]
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="fraud-redis-cluster-") as folder:
        try:
            for port, bus_port in zip(ports, bus_ports, strict=True):
                node = Path(folder) / str(port)
                node.mkdir()
                argv = [program, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(node)]
                argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                # the bus port defaults to port + 10000, which a free port need not leave free
                argv += ["--cluster-port", str(bus_port)]
                argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
                argv += ["--logfile", str(node / "redis.log")]
                servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
            deadline = time.monotonic() + START_TIMEOUT_S
            while not all(port_open("127.0.0.1", p) for p in ports):
                if time.monotonic() > deadline:
                    logs = [tail(Path(folder) / str(p) / "redis.log") for p in ports]
                    raise TimeoutError("a Redis Cluster node did not start:\n" + "\n".join(logs))
                time.sleep(0.05)
            nodes = [f"127.0.0.1:{p}" for p in ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            _wait_cluster_ok(cli, ports[0])
            yield ports
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)


def _wait_cluster_ok(cli: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True, check=False
        ).stdout
        if "cluster_state:ok" in info:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the Redis Cluster did not reach state ok:\n{info}")
