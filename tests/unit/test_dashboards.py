"""The Grafana dashboard: generated from code, committed as generated, wired to Prometheus."""

from __future__ import annotations

import json

import yaml

from services.common.settings import PROJECT_ROOT
from services.observability.dashboards import DASHBOARD_FILE, DATASOURCE_UID, build, panel_queries

REQUIRED = [
    "Throughput",
    "latency",
    "budget left",
    "Burn rate",
    "outcome",
    "Score",
    "Consumer lag",
    "Dead-lettered",
    "API latency",
]


def test_committed_json_is_what_the_code_generates() -> None:
    committed = json.loads(DASHBOARD_FILE.read_text())
    assert committed == json.loads(json.dumps(build(), sort_keys=True)), (
        "run `fraud dashboards` and commit infra/grafana/dashboards/fraud-slo.json"
    )


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    board = json.loads(DASHBOARD_FILE.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels)
    for needed in REQUIRED:
        assert needed in titles, needed
    provisioned = yaml.safe_load(
        (PROJECT_ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert provisioned["uid"] == DATASOURCE_UID
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])
    assert len(panel_queries()) == sum(len(p["targets"]) for p in panels)
