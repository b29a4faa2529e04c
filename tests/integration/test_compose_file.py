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
    for name in ("kafka", "redis", "prometheus", "grafana", "scorer", "recorder", "api"):
        assert "healthcheck" in services[name], name
    # one image for every process: a HEALTHCHECK in it would mark the producer and the
    # one-shot jobs unhealthy (they serve no /healthz)
    assert "HEALTHCHECK" not in (PROJECT_ROOT / "Dockerfile").read_text()
    for name in ("scorer", "api", "producer"):
        assert services[name]["build"] == "." and (PROJECT_ROOT / "Dockerfile").exists()
        assert all(k.startswith("FRAUD_") for k in services[name]["environment"])
    from services.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("topics", "scorer", "api", "train", "producer"):
        assert services[name]["command"][0] in commands, name


def test_the_cluster_profile_has_the_topology_of_fraud_up_cluster() -> None:
    from services.stack.cluster import MIN_INSYNC_REPLICAS, NODES, REDIS_NODES, REPLICATION_FACTOR

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    brokers = [s for name, s in services.items() if name.startswith("kafka-")]
    assert len(brokers) == NODES
    voters = {b["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {",".join(f"{i}@kafka-{i}:9093" for i in range(1, NODES + 1))}
    assert sorted(b["environment"]["KAFKA_NODE_ID"] for b in brokers) == ["1", "2", "3"]
    for broker in brokers:
        env = broker["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(REPLICATION_FACTOR)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == str(MIN_INSYNC_REPLICAS)
        assert broker["profiles"] == ["cluster"]
    nodes = [s for name, s in services.items() if name.startswith("redis-") and name[6:].isdigit()]
    assert len(nodes) == REDIS_NODES
    assert all("--cluster-enabled" in n["command"] for n in nodes)
    assert "--cluster-replicas 1" in services["redis-cluster"]["command"][0]
    scorer = services["scorer-cluster"]
    assert scorer["deploy"]["replicas"] >= 2
    assert scorer["environment"]["FRAUD_REDIS__CLUSTER"] == "true"
    assert scorer["environment"]["FRAUD_TOPICS__REPLICATION_FACTOR"] == str(REPLICATION_FACTOR)
    assert len(scorer["environment"]["FRAUD_KAFKA__BOOTSTRAP_SERVERS"].split(",")) == NODES


def test_prometheus_in_compose_can_reach_every_target_it_scrapes() -> None:
    """Each ``fraud`` target of prometheus.compose.yml is a compose service listening on all
    its interfaces at that port: a /metrics on 127.0.0.1 (the settings' default) answers only
    inside its own container, and every scorer panel and SLO rule had no data."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    scrape = yaml.safe_load((PROJECT_ROOT / "infra/prometheus/prometheus.compose.yml").read_text())
    (fraud,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "fraud"]
    targets = [t for group in fraud["static_configs"] for t in group["targets"]]
    assert targets
    for target in targets:
        name, port = target.split(":")
        env, command = services[name]["environment"], services[name]["command"]
        listens = {
            "scorer": (env.get("FRAUD_SCORER__METRICS_HOST"), env["FRAUD_SCORER__METRICS_PORT"]),
            "recorder": (
                env.get("FRAUD_RECORDER__METRICS_HOST"),
                env["FRAUD_RECORDER__METRICS_PORT"],
            ),
            "api": (env.get("FRAUD_API__HOST"), env["FRAUD_API__PORT"]),
        }.get(name)
        if listens is None:  # the producer: its flags
            listens = tuple(
                command[command.index(f) + 1] if f in command else None
                for f in ("--metrics-host", "--metrics-port")
            )
        assert listens == ("0.0.0.0", port), (target, listens)


def test_published_ports_are_on_this_host_only() -> None:
    # plain HTTP carries API keys and console cookies; Grafana's admin can add data sources
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published


def test_every_broker_keeps_its_log_in_a_named_volume() -> None:
    """Given any ``KAFKA_*`` variable, the apache/kafka image uses only those: without
    ``KAFKA_LOG_DIRS`` the log lives in the container (Kafka's default, under /tmp), and a
    recreated container has lost every topic, the decisions the store is rebuilt from too."""
    compose = yaml.safe_load(COMPOSE.read_text())
    brokers = {n: s for n, s in compose["services"].items() if n == "kafka" or n[:6] == "kafka-"}
    assert len(brokers) == 4
    for name, broker in brokers.items():
        log_dirs = broker["environment"].get("KAFKA_LOG_DIRS")
        mounts = dict(str(v).rsplit(":", 1)[::-1] for v in broker.get("volumes", []))
        assert log_dirs in mounts, (name, log_dirs, mounts)
        assert mounts[log_dirs] in compose["volumes"], name  # a named volume, not the container


def test_prometheus_in_compose_finds_the_cluster_replicas() -> None:
    """The cluster profile's scorers and recorders (two replicas each, one service name) are
    found by DNS, at the port each listens on, with the ``service`` label the alerts use."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    scrape = yaml.safe_load((PROJECT_ROOT / "infra/prometheus/prometheus.compose.yml").read_text())
    found = {}
    for job in scrape["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            label = {r["target_label"]: r["replacement"] for r in job["relabel_configs"]}
            for name in sd["names"]:
                found[name] = (sd["port"], label["service"])
    assert found == {"scorer-cluster": (8001, "scorer"), "recorder-cluster": (8003, "recorder")}
    for name, (port, service) in found.items():
        env = services[name]["environment"]
        setting = f"FRAUD_{service.upper()}__METRICS"
        assert (env[f"{setting}_HOST"], env[f"{setting}_PORT"]) == ("0.0.0.0", str(port)), name
