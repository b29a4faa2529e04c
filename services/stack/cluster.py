"""``fraud up --cluster``: the topology past one machine, run on this one so that it is tested.

- Apache Kafka: three KRaft nodes, each broker and controller (a quorum of three), under
  ``var/kafka-cluster/node-{1,2,3}``; the contract topics replicated three times with
  ``min.insync.replicas=2`` (one broker may be away without refusing or losing a write).
- Redis Cluster: three masters, each with one replica (``redis-server --cluster-enabled``,
  slots assigned by ``redis-cli --cluster create``), under ``var/redis-cluster/<port>``, with
  the stack's persistence.

Clients reach it by settings alone (:func:`client_environment`, also written to
``var/cluster.env``). Ports: ``FRAUD_CLUSTER__KAFKA_BASE_PORT`` (29090) + 2, + 4, + 6 for the
brokers (their controllers one above each), ``FRAUD_CLUSTER__REDIS_BASE_PORT`` (27000) + 1 to
+ 6 for Redis, their cluster bus ports + 101 to + 106 (:data:`BUS_OFFSET`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from services.common.connections import redis_client
from services.common.settings import Settings
from services.stack.errors import StackError
from services.stack.install import ensure_program
from services.stack.kafka_broker import KafkaBroker, KafkaNode
from services.stack.process import ManagedProcess, tail
from services.stack.redis_server import server_argv
from services.stack.topics import ensure_topics

NODES = 3
REDIS_NODES = 6
"""Three masters and their replicas (``redis-cli --cluster create --cluster-replicas 1``)."""
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


def broker_ports(settings: Settings) -> list[tuple[int, int]]:
    """(client port, controller port) of each Kafka node."""
    base = settings.cluster.kafka_base_port
    return [(base + 2 * i, base + 2 * i + 1) for i in range(1, NODES + 1)]


BUS_OFFSET = 100
"""A Redis Cluster node's bus port is its port + this. Redis's default, + 10,000, put the
local cluster's bus ports (37001 to 37006) in Linux's ephemeral port range (32768-60999),
where any outgoing connection on the machine may hold one: CI failed so once (2026-12-04,
"bind: Address already in use" on 37002)."""


def bus_port(port: int, data: Path) -> int:
    """The cluster bus port of the node on ``port``: the one its ``nodes.conf`` in ``data``
    records for itself (a cluster created with other bus ports keeps them: its nodes know one
    another by them), else ``port`` + :data:`BUS_OFFSET`."""
    try:
        lines = (data / "nodes.conf").read_text().splitlines()
    except OSError:
        return port + BUS_OFFSET
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2].split(","):
            address = fields[1].split(",")[0]  # ip:port@cport[,hostname]
            recorded = address.rsplit("@", 1)[1] if "@" in address else ""
            if recorded.isdigit() and int(recorded) > 0:  # ":0@0" before the node joined
                return int(recorded)
    return port + BUS_OFFSET


def redis_ports(settings: Settings) -> list[int]:
    base = settings.cluster.redis_base_port
    return [base + i for i in range(1, REDIS_NODES + 1)]


def client_environment(settings: Settings) -> dict[str, str]:
    """:func:`client_settings` as the environment variables that point the scorer, the API
    and the producers at the cluster."""
    cluster = client_settings(settings)
    return {
        "FRAUD_KAFKA__BOOTSTRAP_SERVERS": cluster.kafka.bootstrap_servers,
        "FRAUD_REDIS__CLUSTER": "true",
        "FRAUD_REDIS__HOST": cluster.redis.host,
        "FRAUD_REDIS__PORT": str(cluster.redis.port),
        "FRAUD_REDIS__DB": str(cluster.redis.db),
        "FRAUD_TOPICS__REPLICATION_FACTOR": str(cluster.topics.replication_factor),
        "FRAUD_TOPICS__MIN_INSYNC_REPLICAS": str(cluster.topics.min_insync_replicas),
    }


def client_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the cluster: its brokers, its Redis Cluster (any node; the
    others are discovered), topics replicated :data:`REPLICATION_FACTOR` times."""
    host = settings.kafka.broker_host
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={
                    "bootstrap_servers": ",".join(f"{host}:{p}" for p, _ in broker_ports(settings)),
                }
            ),
            "redis": settings.redis.model_copy(
                update={"cluster": True, "port": redis_ports(settings)[0], "db": 0}
            ),
            "topics": settings.topics.model_copy(
                update={
                    "replication_factor": REPLICATION_FACTOR,
                    "min_insync_replicas": MIN_INSYNC_REPLICAS,
                }
            ),
        }
    )


class ClusterStack:
    """The Kafka and Redis clusters of ``fraud up --cluster``, state under ``var_dir``."""

    def __init__(self, settings: Settings) -> None:
        if settings.kafka.security_protocol != "PLAINTEXT":
            raise StackError("kafka: `fraud up --cluster` runs PLAINTEXT brokers only")
        self._settings = settings
        host = settings.kafka.broker_host
        ports = broker_ports(settings)
        voters = ",".join(f"{i}@{host}:{c}" for i, (_, c) in enumerate(ports, start=1))
        home = settings.var_dir / "kafka-cluster"
        self.brokers = [
            KafkaBroker(
                settings,
                KafkaNode(
                    name=f"kafka-{i}",
                    node_id=i,
                    port=port,
                    controller_port=controller,
                    home=home / f"node-{i}",
                    voters=voters,
                    replication=REPLICATION_FACTOR,
                    min_isr=MIN_INSYNC_REPLICAS,
                ),
            )
            for i, (port, controller) in enumerate(ports, start=1)
        ]

    def processes(self, install: bool = False) -> list[ManagedProcess]:
        """Every process of the cluster, brokers first."""
        return [b.process() for b in self.brokers] + [
            self._redis_node(port, install) for port in redis_ports(self._settings)
        ]

    def up(self) -> list[tuple[str, str, float]]:
        """Start what is not running, wait until each node is ready, create the Redis
        Cluster's slots once, create the topics. Idempotent.

        Returns:
            (process or topic, "started" | "running" | "created" | "exists", seconds).

        Raises:
            StackError: a node does not start or become ready, or the Redis Cluster does not
                reach state ``ok``.
        """
        began = time.monotonic()
        for broker in self.brokers:
            broker.prepare()
        launched = [(proc, *proc.launch()) for proc in self.processes(install=True)]
        rows = []
        for proc, outcome, popen in launched:  # a broker is ready once a quorum runs
            proc.wait_ready(self._settings.service_timeout_s, popen)
            rows.append((proc.name, outcome, time.monotonic() - began))
        created = self._create_redis_cluster()
        rows.append(("redis-cluster slots", "created" if created else "exists", 0.0))
        clients = client_settings(self._settings)
        for topic, outcome in ensure_topics(clients).items():
            rows.append((f"topic {topic}", outcome, time.monotonic() - began))
        env = "".join(f"{k}={v}\n" for k, v in client_environment(self._settings).items())
        (self._settings.var_dir / "cluster.env").write_text(env)
        return rows

    def down(self) -> list[tuple[str, bool]]:
        """Stop every node, Redis first. Returns (process, was running)."""
        return [(p.name, p.stop()) for p in reversed(self.processes())]

    def redis_process(self, port: int) -> ManagedProcess:
        """The Redis Cluster node on ``port`` (one of :func:`redis_ports`)."""
        return self._redis_node(port, install=False)

    def _redis_node(self, port: int, install: bool) -> ManagedProcess:
        cfg = self._settings.redis
        data = self._settings.var_dir / "redis-cluster" / str(port)
        program = "redis-server"
        if install:  # about to start it
            data.mkdir(parents=True, exist_ok=True)
            program = ensure_program("redis-server", "redis-server")

        def ping() -> bool:
            client = redis_client(cfg.model_copy(update={"port": port}), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()

        return ManagedProcess(
            name=f"redis-{port}",
            argv=server_argv(
                program,
                cfg.host,
                port,
                data,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-port",
                str(bus_port(port, data)),
            ),
            host=cfg.host,
            port=port,
            port_setting="FRAUD_CLUSTER__REDIS_BASE_PORT",
            ready=ping,
            run_dir=self._settings.var_dir / "run",
            log_dir=self._settings.var_dir / "log",
        )

    def _create_redis_cluster(self) -> bool:
        """Assign the slots to three masters and a replica to each, unless done before
        (``nodes.conf`` keeps it across restarts); then wait for state ``ok``.

        Returns:
            True when the cluster was created now.
        """
        cli = ensure_program("redis-cli", "redis-tools")
        host, first = self._settings.redis.host, redis_ports(self._settings)[0]
        created = False
        if "cluster_known_nodes:1\n" in self._cluster_info(cli, host, first).replace("\r", ""):
            nodes = [f"{host}:{p}" for p in redis_ports(self._settings)]
            result = subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(f"redis: `redis-cli --cluster create` failed:\n{result.stdout}")
            created = True
        deadline = time.monotonic() + self._settings.service_timeout_s
        while time.monotonic() < deadline:
            info = self._cluster_info(cli, host, first)
            if "cluster_state:ok" in info:
                return created
            time.sleep(0.2)
        log = Path(self._settings.var_dir / "log" / f"redis-{first}.log")
        raise StackError(f"redis: the cluster did not reach state ok:\n{info}\n{tail(log)}")

    @staticmethod
    def _cluster_info(cli: str, host: str, port: int) -> str:
        return subprocess.run(
            [cli, "-h", host, "-p", str(port), "cluster", "info"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
