"""`fraud bench` end to end on a two-rate ladder: the three workers answer (the scorer with
its recorder beside it), the report is written.

Speeds are not asserted here (the benchmark reports them); this only proves the machinery.
"""

from __future__ import annotations

import json
import os

import pytest

from services.common.settings import Settings
from tests.conftest import TrainedModel
from tools.bench.runner import run

pytestmark = pytest.mark.e2e


def test_bench_writes_its_report(trained: TrainedModel, kafka: str, redis_url: str) -> None:
    settings = Settings(var_dir=trained.settings.var_dir)
    report = run(settings, rates=(50, 100), seconds=3, log=lambda *_: None)
    assert set(report) >= {"passthrough", "scorer", "steps"}
    assert {s["target"] for s in report["steps"]} == {
        "passthrough",
        "aiokafka-passthrough",
        "scorer",
    }
    for step in report["steps"]:
        assert step["sent"] == int(step["rate_tps"] * 3)
        assert step["not_returned_after_grace"] == 0, step
        assert step["p99_ms"] is not None and step["cpu_percent"] > 0
        others = step["cpu_percent_others"]
        beside = {"recorder"} if step["target"] == "scorer" else set()  # the scorer's pair
        assert set(others) == {"load_generator", "kafka", "redis"} | beside
        assert others["load_generator"] > 0 and others["kafka"] > 0
        # the machine's CPU includes the worker's and the load generator's (same window)
        machine = step["machine_cpu_percent"]
        assert step["cpu_percent"] + others["load_generator"] <= machine + 5
        assert machine <= 100 * (os.cpu_count() or 1) + 5
    cost = report["calibration"]["decide_cpu_us_per_tx"]
    assert set(cost) == {"1", "10"} and all(us > 0 for us in cost.values())
    shadowed = report["calibration"]["decide_cpu_us_per_tx_with_shadow"]
    assert set(shadowed) == {"1", "10"} and all(us > 0 for us in shadowed.values())
    saved = json.loads((settings.reports_dir / "bench.json").read_text())
    assert saved["steps"] == report["steps"]
    assert (settings.reports_dir / "bench.md").read_text().startswith("| target |")
    assert (settings.reports_dir / "bench.png").stat().st_size > 10_000
