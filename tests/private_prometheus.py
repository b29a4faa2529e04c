"""A Prometheus of one test's own: Debian's prometheus on a free port, a fresh data folder,
the project's rules, one-second scrapes and rule evaluations, only the given targets.

Used where a test must see rules evaluate over its own traffic alone (the stack's Prometheus
also scrapes every other test's scorers).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

from services.common.settings import PROJECT_ROOT
from tests.conftest import free_port, wait_for

RULES = PROJECT_ROOT / "infra" / "prometheus" / "rules"


class PrivatePrometheus:
    """Start with :meth:`start`, stop with :meth:`stop`.

    Args:
        home: an empty folder for the configuration, the rules and the data.
        targets: ``host:port`` of the /metrics endpoints to scrape.
        alert_for: per alert name, a ``for`` duration that replaces the rules file's (a test
            cannot wait 30 minutes; promtool's cases test the real durations).
    """

    def __init__(self, home: Path, targets: list[str], alert_for: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = home / "rules"
        rules.mkdir(parents=True)
        replaced = set()
        for path in RULES.glob("*.yml"):
            groups = yaml.safe_load(path.read_text())
            for group in groups["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") in alert_for:
                        rule["for"] = alert_for[rule["alert"]]
                        replaced.add(rule["alert"])
            (rules / path.name).write_text(yaml.safe_dump(groups, sort_keys=False))
        assert replaced == set(alert_for), f"no such alert: {set(alert_for) - replaced}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules / "*.yml")],
            "scrape_configs": [{"job_name": "fraud", "static_configs": [{"targets": targets}]}],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivatePrometheus:
        program = shutil.which("prometheus")
        assert program, "prometheus is missing: run `make up` (it installs Debian's prometheus)"
        self.process = subprocess.Popen(
            [
                program,
                f"--config.file={self.home / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.home / "prometheus.log", "wb"),  # noqa: SIM115
        )
        wait_for(self._ready, 60, "the private Prometheus")
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Every series of ``expr`` now: labels and value."""
        reply: dict[str, Any] = requests.get(
            f"{self.url}/api/v1/query", params={"query": expr}, timeout=10
        ).json()
        assert reply["status"] == "success", reply
        return [(r["metric"], float(r["value"][1])) for r in reply["data"]["result"]]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
