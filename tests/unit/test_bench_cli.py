"""``fraud bench``'s command line against the benchmark module it drives (no services)."""

from __future__ import annotations

from services.cli import build_parser
from tools.bench.runner import DEFAULT_RATES, TARGETS


def test_the_default_ladder_is_the_runners() -> None:
    """The CLI writes the ladder out (importing the runner at parse time would load numpy
    and psutil for every subcommand); it must not drift from the runner's."""
    args = build_parser().parse_args(["bench"])
    assert tuple(float(r) for r in args.rates.split(",")) == DEFAULT_RATES
    assert args.targets is None  # all of runner.TARGETS
    assert "scorer" in TARGETS
