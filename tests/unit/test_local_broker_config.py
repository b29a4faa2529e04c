"""The local broker's rendered configuration under PLAINTEXT and SCRAM (nothing started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import Settings
from services.stack.errors import StackError
from services.stack.kafka_broker import KafkaBroker

PASSWORD = "Zq8-not-a-real-secret-4Kx"
SCRAM = {
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_username": "scorer",
    "sasl_password": PASSWORD,
}


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def test_plaintext_by_default(tmp_path: Path) -> None:
    broker = KafkaBroker(Settings(var_dir=tmp_path))
    broker.render_properties()
    props = _properties(broker.properties.read_text())
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not any(key.startswith(("sasl.", "listener.name.")) for key in props)


def test_scram_listener_and_private_file(tmp_path: Path) -> None:
    broker = KafkaBroker(Settings(var_dir=tmp_path, kafka=SCRAM))
    broker.render_properties()
    props = _properties(broker.properties.read_text())
    assert props["listeners"].startswith("SASL_PLAINTEXT://127.0.0.1:9092,")
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    jaas = props["listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required")
    assert broker.properties.stat().st_mode & 0o077 == 0


def test_sasl_ssl_and_unquotable_passwords_are_refused_for_the_local_broker(
    tmp_path: Path,
) -> None:
    sasl_ssl = Settings(var_dir=tmp_path, kafka={**SCRAM, "security_protocol": "SASL_SSL"})
    with pytest.raises(StackError, match="SASL_SSL"):
        KafkaBroker(sasl_ssl).render_properties()
    bad = Settings(var_dir=tmp_path, kafka={**SCRAM, "sasl_password": "with,comma-and]bracket"})
    with pytest.raises(StackError, match="FRAUD_KAFKA__SASL_PASSWORD") as error:
        KafkaBroker(bad).render_properties()
    assert "with,comma" not in str(error.value)


def test_storage_formatted_without_the_scram_user_is_not_silently_reused(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("formatted earlier\n")
    with pytest.raises(StackError, match="formatted for PLAINTEXT"):
        KafkaBroker(Settings(var_dir=tmp_path, kafka=SCRAM)).format_storage()
    KafkaBroker(Settings(var_dir=tmp_path)).format_storage()  # PLAINTEXT as before: a no-op


def test_one_node_is_its_own_quorum_and_replicates_once(tmp_path: Path) -> None:
    broker = KafkaBroker(Settings(var_dir=tmp_path))
    broker.home.mkdir(parents=True)
    broker.render_properties()
    props = _properties(broker.properties.read_text())
    assert (props["node.id"], props["controller.quorum.voters"]) == ("1", "1@127.0.0.1:9093")
    assert props["offsets.topic.replication.factor"] == props["min.insync.replicas"] == "1"


def test_cluster_nodes_share_a_quorum_of_three_and_replicate_three_times(tmp_path: Path) -> None:
    from services.stack.cluster import ClusterStack, broker_ports

    settings = Settings(var_dir=tmp_path)
    nodes = ClusterStack(settings).brokers
    rendered = []
    for broker in nodes:
        broker.home.mkdir(parents=True)
        broker.render_properties()
        rendered.append(_properties(broker.properties.read_text()))
    voters = ",".join(
        f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(broker_ports(settings), start=1)
    )
    assert [p["node.id"] for p in rendered] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in rendered} == {voters}
    assert [p["listeners"] for p in rendered] == [
        f"PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}" for b, c in broker_ports(settings)
    ]
    for props in rendered:
        assert props["default.replication.factor"] == "3"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert len({p["log.dirs"] for p in rendered}) == 3
    assert {b.node.cluster_id_file for b in nodes} == {tmp_path / "kafka-cluster" / "cluster.id"}


def test_the_scram_password_is_not_on_the_storage_tools_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kafka-storage format --add-scram`` took the password as an argument: anyone on the
    machine could read it in the process list while the tool ran. It goes in an argument
    file of the java launcher, readable by the user only and deleted after."""
    import stat
    import subprocess

    from services.stack import kafka_broker

    seen: list[tuple[list[str], str, int]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        argument_file = Path(argv[-1].removeprefix("@"))
        mode = stat.S_IMODE(argument_file.stat().st_mode)
        seen.append((argv, argument_file.read_text(), mode))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(kafka_broker.subprocess, "run", run)
    broker = KafkaBroker(Settings(var_dir=tmp_path / "a dir", kafka=SCRAM))
    broker.render_properties()
    broker.format_storage()

    ((argv, text, mode),) = seen
    assert not any(PASSWORD in a for a in argv)
    assert argv[-1].startswith("@") and argv[-2] == f"{broker.libs}/*"  # after the classpath
    lines = text.splitlines()
    assert lines[0] == f'"{kafka_broker.STORAGE_TOOL}"' and lines[1] == '"format"'
    assert f'"SCRAM-SHA-256=[name=scorer,password={PASSWORD}]"' in lines
    assert f'"{broker.properties}"' in lines  # a path with a space: one quoted argument
    assert mode == 0o600
    assert not Path(argv[-1][1:]).exists()
