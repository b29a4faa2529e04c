"""The Grafana dashboard, built with grafana-foundation-sdk and written as JSON.

``fraud dashboards`` writes ``infra/grafana/dashboards/fraud-slo.json``, which Grafana's
file provisioning loads (``infra/grafana/provisioning``). Every panel's query is listed by
:func:`panel_queries` so that a test can run each one against Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.common.settings import PROJECT_ROOT

DASHBOARD_FILE = PROJECT_ROOT / "infra" / "grafana" / "dashboards" / "fraud-slo.json"
DATASOURCE_UID = "prometheus"

# (title, unit, [(expr, legend)], kind) in display order; kind: timeseries or stat
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "Throughput (decisions/s)",
        "reqps",
        [
            ("sum(rate(fraud_decisions_total[1m]))", "decisions/s"),
            ("sum(rate(fraud_transactions_received_total[1m]))", "received/s"),
        ],
        "timeseries",
    ),
    (
        "End-to-end latency against the 50 ms SLO",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (le) "
                "(rate(fraud_e2e_latency_seconds_bucket[1m])))",
                f"p{int(q * 100)}",
            )
            for q in (0.5, 0.95, 0.99)
        ]
        + [("vector(0.05)", "SLO 50 ms")],
        "timeseries",
    ),
    (
        "Latency error budget left (30 d)",
        "percentunit",
        [
            (
                'clamp_min(1 - (1 - sum(rate(fraud_e2e_latency_seconds_bucket{le="0.05"}[30d]))'
                " / sum(rate(fraud_e2e_latency_seconds_count[30d]))) / 0.01, 0)",
                "budget left",
            )
        ],
        "stat",
    ),
    (
        "Availability error budget left (30 d)",
        "percentunit",
        [
            (
                "clamp_min(1 - clamp_min(1 - sum(rate(fraud_decisions_total[30d]))"
                ' / sum(rate(fraud_transactions_received_total{result="valid"}[30d])), 0)'
                " / 0.001, 0)",
                "budget left",
            )
        ],
        "stat",
    ),
    (
        "Burn rate, latency SLO",
        "short",
        [(f"fraud:slo_latency_errors:ratio_rate{w} / 0.01", w) for w in ("5m", "1h", "6h")],
        "timeseries",
    ),
    (
        "Burn rate, availability SLO",
        "short",
        [(f"fraud:slo_availability_errors:ratio_rate{w} / 0.001", w) for w in ("5m", "1h", "6h")],
        "timeseries",
    ),
    (
        "Decisions by outcome (/s)",
        "reqps",
        [("sum by (outcome) (rate(fraud_decisions_total[1m]))", "{{outcome}}")],
        "timeseries",
    ),
    (
        "Score distribution (share of decisions scored at most each bound)",
        "percentunit",
        [
            (
                "sum by (le) (rate(fraud_score_bucket[5m])) / ignoring(le) group_left"
                " sum(rate(fraud_score_count[5m]))",
                "score <= {{le}}",
            )
        ],
        "timeseries",
    ),
    (
        "Consumer lag (transactions behind)",
        "short",
        [("sum by (partition) (fraud_consumer_lag_records)", "partition {{partition}}")],
        "timeseries",
    ),
    (
        "Dead-lettered events (/s)",
        "reqps",
        [
            ("sum by (reason) (rate(fraud_dead_letters_total[5m]))", "{{reason}}"),
            ('sum(rate(fraud_transactions_received_total{result="invalid"}[5m]))', "all invalid"),
            (
                "sum by (reason) (rate(fraud_label_dead_letters_total[5m]))",
                "label {{reason}}",
            ),
        ],
        "timeseries",
    ),
    (
        "Stage latency p99 (per micro-batch)",
        "s",
        [
            (
                "histogram_quantile(0.99, sum by (le, stage)"
                " (rate(fraud_stage_latency_seconds_bucket[5m])))",
                "{{stage}}",
            )
        ],
        "timeseries",
    ),
    (
        "API latency p99",
        "s",
        [
            (
                "histogram_quantile(0.99, sum by (le, route)"
                " (rate(fraud_api_request_duration_seconds_bucket[5m])))",
                "{{route}}",
            )
        ],
        "timeseries",
    ),
    (
        "Event-loop lag p99 and degraded-mode backlog",
        "short",
        [
            (
                "histogram_quantile(0.99, sum by (le)"
                " (rate(fraud_event_loop_lag_seconds_bucket[5m])))",
                "loop lag p99 (s)",
            ),
            ("sum(fraud_feature_state_backlog)", "transactions awaiting the feature state"),
        ],
        "timeseries",
    ),
    (
        "Degraded mode, label freshness, active model",
        "short",
        [
            ("max(fraud_degraded_mode)", "degraded"),
            ("max(fraud_feature_freshness_seconds)", "label age (s)"),
            ("max by (version) (fraud_model_info)", "model {{version}}"),
        ],
        "timeseries",
    ),
    (
        "Input drift: PSI against the training window, last hour (alerted inputs)",
        "short",
        [
            (
                "max by (input) (fraud:drift_psi:1h"
                '{input!~"score|TX_DURING_WEEKEND|TX_DURING_NIGHT"})',
                "{{input}}",
            ),
            ("vector(0.25)", "alert above 0.25 for 30 min"),
        ],
        "timeseries",
    ),
    (
        "Score drift: PSI against the training window",
        "short",
        [
            ('max(fraud:drift_psi:1h{input="score"})', "last hour"),
            ('max(fraud:drift_psi:1d{input="score"})', "last day"),
        ],
        "timeseries",
    ),
]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    return [(title, expr) for title, _, targets, _ in PANELS for expr, _ in targets]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
    from grafana_foundation_sdk.builders.prometheus import Dataquery
    from grafana_foundation_sdk.builders.stat import Panel as Stat
    from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
    board = (
        Dashboard("Fraud scoring SLOs")
        .uid("fraud-slo")
        .tags(["fraud-detection", "slo"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_row(Row("Scoring path"))
    )
    for title, unit, targets, kind in PANELS:
        panel = (Stat() if kind == "stat" else Timeseries()).title(title).unit(unit)
        panel = panel.datasource(source).height(8).span(12 if kind == "timeseries" else 6)
        for i, (expr, legend) in enumerate(targets):
            panel = panel.with_target(
                Dataquery().expr(expr).legend_format(legend).ref_id(chr(65 + i)).datasource(source)
            )
        board = board.with_panel(panel)
    data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))
    return data


def write(path: Path = DASHBOARD_FILE) -> Path:
    """Write the dashboard JSON; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build(), indent=2, sort_keys=True) + "\n")
    return path
