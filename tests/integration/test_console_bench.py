"""``fraud bench-console`` on a small store: it fills a private Redis, signs in and times every
page (a page that does not answer 200 fails the run), and writes its report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TrainedModel
from tools.bench.console_pages import PAGES, run

pytestmark = pytest.mark.integration


def test_bench_console_times_every_page(trained: TrainedModel) -> None:
    report = run(trained.settings, decisions=3000, log=lambda *_: None)
    assert report["stored"]["decisions"] == 3000
    assert report["stored"]["keys"] >= 3000  # each decision, its card's index, the queue
    assert set(report["pages"]) == set(PAGES)
    previews = [
        p["previewed_decisions"] for p in report["pages"].values() if "previewed_decisions" in p
    ]
    assert previews == [1000, 3000]  # 10,000 asked, 3,000 stored: the row says 3,000
    for page in report["pages"].values():
        assert 0 < page["server_ms_median"] <= page["server_ms_max"]
        assert page["server_ms_median"] <= page["request_ms_median"]
    written = json.loads((trained.settings.reports_dir / "console.json").read_text())
    assert written["pages"] == report["pages"]
