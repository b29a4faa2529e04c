"""A second worker on one machine, its /metrics port taken (by the first): a sentence that
names the setting and exit 1, before Faust starts (it died in a traceback:
``OSError: [Errno 98] Address already in use``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.scorer.worker import main


@pytest.mark.parametrize(("recorder", "setting"), [(False, "SCORER"), (True, "RECORDER")])
def test_a_taken_metrics_port_is_said_with_the_setting_that_moves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recorder: bool, setting: str
) -> None:
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        group = "recorder" if recorder else "scorer"
        settings = Settings(var_dir=tmp_path, **{group: {"metrics_port": port}})
        assert main(settings, recorder=recorder) == 1
    said = capsys.readouterr().err
    assert f"port {port}" in said and f"FRAUD_{setting}__METRICS_PORT=0" in said
