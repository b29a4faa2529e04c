"""The local Apache Kafka broker: jars from Maven Central, KRaft storage, the JVM process.

``python -m services.stack.kafka_broker {fetch|start|stop|status}`` (or
``infra/kafka/kafka.sh``) drives the broker alone; ``fraud up`` drives it with the rest.
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.connections import kafka_python_kwargs
from services.common.settings import PROJECT_ROOT, Settings
from services.stack.errors import StackError
from services.stack.process import ManagedProcess, write_private

INFRA = PROJECT_ROOT / "infra" / "kafka"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_SCRAM_SAFE = re.compile(r"^[A-Za-z0-9._~+/=@:-]+$")
"""Characters the storage tool's ``--add-scram`` and a JAAS string carry unquoted."""


@dataclass(frozen=True)
class KafkaNode:
    """Who one KRaft node (broker and controller) is, and where it lives.

    Attributes:
        name: the process name (``kafka``, or ``kafka-1`` .. ``kafka-3`` in a cluster).
        node_id: Kafka's ``node.id``.
        port, controller_port: its client and controller listeners (on the broker host).
        home: its folder (configuration, storage); the jars are shared (``var/kafka/libs``).
        voters: ``controller.quorum.voters``, the same on every node of a cluster.
        replication, min_isr: replication factor and ``min.insync.replicas`` of the broker's
            own topics (consumer offsets, transactions) and of topics created without one.
    """

    name: str
    node_id: int
    port: int
    controller_port: int
    home: Path
    voters: str
    replication: int = 1
    min_isr: int = 1

    @property
    def cluster_id_file(self) -> Path:
        """Where the cluster id is kept: the node's own folder alone, its parent in a cluster
        (every node is formatted with the same id)."""
        return self.home / "cluster.id" if self.name == "kafka" else self.home.parent / "cluster.id"


def single_node(settings: Settings) -> KafkaNode:
    """The stack's one broker, on ``FRAUD_KAFKA__BOOTSTRAP_SERVERS`` and ``CONTROLLER_PORT``."""
    kafka = settings.kafka
    return KafkaNode(
        name="kafka",
        node_id=1,
        port=kafka.broker_port,
        controller_port=kafka.controller_port,
        home=settings.var_dir / "kafka",
        voters=f"1@{kafka.broker_host}:{kafka.controller_port}",
    )


class KafkaBroker:
    """One KRaft node (broker and controller): the stack's only one, whose state lives in
    ``var/kafka``, or one of a cluster's (``services.stack.cluster``)."""

    def __init__(self, settings: Settings, node: KafkaNode | None = None) -> None:
        self._settings = settings
        self.node = node or single_node(settings)
        self.home = self.node.home
        self.libs = settings.var_dir / "kafka" / "libs"
        self.data = self.home / "data"
        self.properties = self.home / "server.properties"
        self.scram_marker = self.home / "scram.user"

    def fetch_jars(self) -> bool:
        """Copy the broker's runtime jars from Maven Central into ``var/kafka/libs``.

        Returns:
            True when jars were downloaded, False when the right ones were already there.

        Raises:
            StackError: Java or Maven is missing, or Maven fails.
        """
        _require("java", "a Java runtime (17 or later): apt-get install openjdk-17-jre-headless")
        wanted = f"kafka_2.13-{_pom_property('kafka.version')}.jar"
        if (self.libs / wanted).exists():
            return False
        _require("mvn", "Apache Maven: apt-get install maven")
        if self.libs.exists():
            shutil.rmtree(self.libs)  # a different Kafka version: start clean
        result = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(INFRA / "pom.xml"),
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not (self.libs / wanted).exists():
            raise StackError(
                "kafka: Maven could not fetch the broker jars from Maven Central:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        return True

    def render_properties(self) -> None:
        """Write ``var/kafka/server.properties`` (mode 0600: it may hold the SCRAM password)
        from the template and the settings.

        Raises:
            StackError: the settings ask for SASL_SSL, or SCRAM credentials the local broker
                cannot carry (see :meth:`scram_user`).
        """
        kafka, node = self._settings.kafka, self.node
        scram = self.scram_user()
        text = (INFRA / "server.properties").read_text()
        for key, value in {
            "@NODE_ID@": str(node.node_id),
            "@VOTERS@": node.voters,
            "@LISTENER@": kafka.security_protocol,
            "@HOST@": kafka.broker_host,
            "@PORT@": str(node.port),
            "@CONTROLLER_PORT@": str(node.controller_port),
            "@LOG_DIRS@": str(self.data),
            "@REPLICATION@": str(node.replication),
            "@MIN_ISR@": str(node.min_isr),
        }.items():
            text = text.replace(key, value)
        if scram is not None:
            mechanism, username, password = scram
            text += (
                "\n# SCRAM on the client listener (FRAUD_KAFKA__SASL_*); no authorizer, so every\n"
                "# authenticated user may do everything\n"
                f"sasl.enabled.mechanisms={mechanism}\n"
                f"sasl.mechanism.inter.broker.protocol={mechanism}\n"
                f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config="
                f'{SCRAM_LOGIN} required username="{username}" password="{password}";\n'
            )
        write_private(self.properties, text)

    def scram_user(self) -> tuple[str, str, str] | None:
        """(mechanism, username, password) of the local broker's SCRAM user, or None under
        PLAINTEXT.

        Raises:
            StackError: SASL_SSL (the local broker has no certificate), or a username or
                password with characters other than letters, digits and ``._~+/=@:-``.
        """
        kafka = self._settings.kafka
        if kafka.security_protocol == "PLAINTEXT":
            return None
        if kafka.security_protocol == "SASL_SSL":
            raise StackError(
                "kafka: the local broker serves PLAINTEXT or SASL_PLAINTEXT, not SASL_SSL; "
                "for SASL_SSL point FRAUD_KAFKA__BOOTSTRAP_SERVERS at your cluster"
            )
        assert kafka.sasl_username is not None and kafka.sasl_password is not None  # validated
        password = kafka.sasl_password.get_secret_value()
        for variable, value in (
            ("SASL_USERNAME", kafka.sasl_username),
            ("SASL_PASSWORD", password),
        ):
            if not _SCRAM_SAFE.match(value):
                raise StackError(
                    f"kafka: FRAUD_KAFKA__{variable} of the local broker may hold only letters, "
                    "digits and ._~+/=@:- (the storage tool and the JAAS file take it unquoted)"
                )
        return kafka.sasl_mechanism, kafka.sasl_username, password

    def format_storage(self) -> None:
        """Format the KRaft storage once; later calls are no-ops (``--ignore-formatted``).

        The cluster id (16 random bytes, unpadded base64url) is kept in ``var/kafka`` so that
        a re-format never changes it. Under SASL_PLAINTEXT the SCRAM user is created here
        (``--add-scram``); ``var/kafka/scram.user`` records its mechanism and name.

        Raises:
            StackError: the tool fails, or SCRAM is asked for but the storage was formatted
                for another SCRAM user or none: SCRAM users are only created at format time.
        """
        argument_file = self.home / "format.args"
        argument_file.unlink(missing_ok=True)  # left by a `fraud up` killed while formatting
        scram = self.scram_user()
        wanted = f"{scram[0]} {scram[1]}" if scram else ""
        if (self.data / "meta.properties").exists():
            have = self.scram_marker.read_text().strip() if self.scram_marker.exists() else ""
            if wanted and have != wanted:  # back to PLAINTEXT is fine: the users just idle
                raise StackError(
                    f"kafka: the storage in {self.data} was formatted for "
                    f"{have or 'PLAINTEXT (no SCRAM user)'}, not {wanted}; "
                    "SCRAM users are created when the storage is formatted. Stop the stack "
                    f"(`fraud down`), delete {self.data} (its topics go with it) and start again."
                )
            return
        id_file = self.node.cluster_id_file
        if not id_file.exists() or id_file.read_text().startswith("-"):
            id_file.write_text(new_cluster_id() + "\n")
        *java, main = self._java(STORAGE_TOOL)
        arguments = [
            main,
            "format",
            "-t",
            id_file.read_text().strip(),
            "-c",
            str(self.properties),
            "--ignore-formatted",
            *(
                ["--add-scram", f"{scram[0]}=[name={scram[1]},password={scram[2]}]"]
                if scram
                else []
            ),
        ]
        # the password must not show in the process list (`ps`, /proc/<pid>/cmdline) while the
        # tool runs: the main class and its arguments go in an argument file the java
        # launcher reads (JDK 9+, "java @file"), private to the user and deleted after
        write_private(argument_file, "".join(f"{_argument_file_quote(a)}\n" for a in arguments))
        try:
            result = subprocess.run(
                [*java, f"@{argument_file}"], capture_output=True, text=True, check=False
            )
        finally:
            argument_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(
                f"kafka: formatting the storage failed:\n{result.stdout}{result.stderr}"
            )
        self.scram_marker.write_text(wanted + "\n")

    def process(self) -> ManagedProcess:
        """The broker as a managed process, ready once a metadata request succeeds."""
        kafka = self._settings.kafka
        return ManagedProcess(
            name=self.node.name,
            argv=[*self._java(BROKER_MAIN, heap_mb=kafka.heap_mb), str(self.properties)],
            host=kafka.broker_host,
            port=self.node.port,
            port_setting=(
                "FRAUD_KAFKA__BOOTSTRAP_SERVERS"
                if self.node.name == "kafka"
                else "FRAUD_CLUSTER__KAFKA_BASE_PORT"
            ),
            ready=self.metadata_ok,
            run_dir=self._settings.var_dir / "run",
            log_dir=self._settings.var_dir / "log",
        )

    def prepare(self) -> None:
        """Jars, configuration and storage: everything the broker needs before it starts."""
        self.fetch_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self.render_properties()
        self.format_storage()

    def metadata_ok(self) -> bool:
        """True when the broker answers a metadata request (its port alone opens too early)."""
        from kafka import KafkaAdminClient  # slow import: only when probing

        kwargs = kafka_python_kwargs(self._settings.kafka)
        kwargs["bootstrap_servers"] = f"{self._settings.kafka.broker_host}:{self.node.port}"
        admin = KafkaAdminClient(**kwargs, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def _java(self, main: str, heap_mb: int = 256) -> list[str]:
        return [
            "java",
            f"-Xms{min(256, heap_mb)}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={INFRA / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
        ]


def _argument_file_quote(argument: str) -> str:
    """One argument as a java launcher argument file holds it: in double quotes, with
    backslashes and quotes escaped (a var dir with a space in its path stays one argument)."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_cluster_id() -> str:
    """16 random bytes, unpadded base64url (22 characters), never starting with ``-``: the
    storage tool's argument parser would take such an id for an option (as Kafka's own
    ``Uuid.randomUuid`` avoids too)."""
    while True:
        raw = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not raw.startswith("-"):
            return raw


def _require(program: str, how: str) -> None:
    if shutil.which(program) is None:
        raise StackError(f"kafka: `{program}` is not on PATH. Install {how}.")


def _pom_property(name: str) -> str:
    text = (INFRA / "pom.xml").read_text()
    return text.split(f"<{name}>", 1)[1].split(f"</{name}>", 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafka.sh", description=__doc__)
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    args = parser.parse_args(argv)
    settings = Settings()
    broker = KafkaBroker(settings)
    try:
        if args.action == "fetch":
            print("downloaded" if broker.fetch_jars() else "jars already present")
        elif args.action == "start":
            broker.prepare()
            print(broker.process().start(settings.service_timeout_s))
        elif args.action == "stop":
            print("stopped" if broker.process().stop() else "not running")
        else:
            proc = broker.process()
            print("ready" if proc.pid() and proc.is_ready() else "down")
    except StackError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
