"""The local Apache Kafka broker: jars from Maven Central, KRaft storage, the JVM process.

``python -m services.stack.kafka_broker {fetch|start|stop|status}`` (or
``infra/kafka/kafka.sh``) drives the broker alone; ``fraud up`` drives it with the rest.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import shutil
import subprocess
import sys

from services.common.settings import PROJECT_ROOT, Settings
from services.stack.errors import StackError
from services.stack.process import ManagedProcess

INFRA = PROJECT_ROOT / "infra" / "kafka"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


class KafkaBroker:
    """A single-node KRaft broker and controller whose state lives in ``var/kafka``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.home = settings.var_dir / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.properties = self.home / "server.properties"

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
        """Write ``var/kafka/server.properties`` from the template and the settings."""
        kafka = self._settings.kafka
        text = (INFRA / "server.properties").read_text()
        for key, value in {
            "@HOST@": kafka.broker_host,
            "@PORT@": str(kafka.broker_port),
            "@CONTROLLER_PORT@": str(kafka.controller_port),
            "@LOG_DIRS@": str(self.data),
        }.items():
            text = text.replace(key, value)
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(text)

    def format_storage(self) -> None:
        """Format the KRaft storage once; later calls are no-ops (``--ignore-formatted``).

        The cluster id (16 random bytes, unpadded base64url) is kept in ``var/kafka`` so that
        a re-format never changes it.
        """
        if (self.data / "meta.properties").exists():
            return
        id_file = self.home / "cluster.id"
        if not id_file.exists() or id_file.read_text().startswith("-"):
            id_file.write_text(new_cluster_id() + "\n")
        result = subprocess.run(
            [
                *self._java(STORAGE_TOOL),
                "format",
                "-t",
                id_file.read_text().strip(),
                "-c",
                str(self.properties),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"kafka: formatting the storage failed:\n{result.stdout}{result.stderr}"
            )

    def process(self) -> ManagedProcess:
        """The broker as a managed process, ready once a metadata request succeeds."""
        kafka = self._settings.kafka
        return ManagedProcess(
            name="kafka",
            argv=[*self._java(BROKER_MAIN, heap_mb=kafka.heap_mb), str(self.properties)],
            host=kafka.broker_host,
            port=kafka.broker_port,
            port_setting="FRAUD_KAFKA__BOOTSTRAP_SERVERS",
            ready=self.metadata_ok,
            run_dir=self._settings.var_dir / "run",
            log_dir=self._settings.var_dir / "log",
        )

    def prepare(self) -> None:
        """Jars, configuration and storage: everything the broker needs before it starts."""
        self.fetch_jars()
        self.render_properties()
        self.format_storage()

    def metadata_ok(self) -> bool:
        """True when the broker answers a metadata request (its port alone opens too early)."""
        from kafka import KafkaAdminClient  # slow import: only when probing

        admin = KafkaAdminClient(
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            request_timeout_ms=3000,
        )
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
