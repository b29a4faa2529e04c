"""``fraud report``: the last run's latency and throughput as PNG, read from Prometheus.

For users without Grafana. Queries Prometheus's HTTP API (``query_range``) over the last
``minutes`` and plots end-to-end latency percentiles against the 50 ms SLO, and decisions per
second, under ``var/reports/``.
"""

from __future__ import annotations

import time
from pathlib import Path

from services.common.settings import Settings
from services.observability.prometheus import ReportError, query_range

__all__ = ["QUERIES", "ReportError", "write_report"]

QUERIES = {
    "p50": "histogram_quantile(0.5, sum by (le) (rate(fraud_e2e_latency_seconds_bucket[30s])))",
    "p95": "histogram_quantile(0.95, sum by (le) (rate(fraud_e2e_latency_seconds_bucket[30s])))",
    "p99": "histogram_quantile(0.99, sum by (le) (rate(fraud_e2e_latency_seconds_bucket[30s])))",
    "throughput": "sum(rate(fraud_decisions_total[30s]))",
}


def with_gaps(points: list[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    """``points`` (unix seconds, value) with a NaN value put in each gap longer than 1.5
    steps, where Prometheus had no sample: a plotted line then breaks there instead of
    joining the two sides with a straight line that no measurement supports."""
    out: list[tuple[float, float]] = []
    for t, v in points:
        if out and t - out[-1][0] > 1.5 * step:
            out.append(((out[-1][0] + t) / 2, float("nan")))
        out.append((t, v))
    return out


def write_report(settings: Settings, minutes: float = 30.0) -> list[Path]:
    """Write ``latency.png`` and ``throughput.png`` under the reports folder.

    Raises:
        ReportError: no decisions in the period.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - minutes * 60
    step = max(5.0, minutes * 60 / 500)
    series = {name: query_range(settings, q, start, end, step) for name, q in QUERIES.items()}
    if not series["throughput"]:
        raise ReportError(f"no decisions in the last {minutes:g} minutes; run `make run` first")
    folder = settings.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    t0 = series["throughput"][0][0]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("p50", "p95", "p99"):
        points = with_gaps(series[name], step)
        ax.plot([(t - t0) / 60 for t, _ in points], [v * 1000 for _, v in points], label=name)
    ax.axhline(50, color="red", ls="--", lw=1, label="SLO 50 ms")
    ax.set(
        xlabel="minutes",
        ylabel="end-to-end latency (ms)",
        yscale="log",
        title="End-to-end latency, from Prometheus (30 s windows)",
    )
    ax.legend()
    fig.tight_layout()
    latency = folder / "latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    points = with_gaps(series["throughput"], step)
    ax.plot([(t - t0) / 60 for t, _ in points], [v for _, v in points])
    ax.set(xlabel="minutes", ylabel="decisions per second", title="Throughput, from Prometheus")
    fig.tight_layout()
    throughput = folder / "throughput.png"
    fig.savefig(throughput, dpi=110)
    plt.close(fig)
    return [latency, throughput]
