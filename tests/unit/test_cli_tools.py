"""``fraud`` with and without the tools: the runtime image ships ``services/`` alone, and its
``fraud`` must still build its parser and run; where ``tools/`` is installed, ``fraud`` lists
the tools' subcommands. Command names: the README's command table."""

from __future__ import annotations

import json
import subprocess
import sys

from services.cli import build_parser
from services.common.settings import PROJECT_ROOT

RUNTIME = {
    "up", "down", "status", "data", "features", "feature-store", "train", "evaluate",
    "backfill", "backtest", "score", "record", "produce", "api", "api-key", "topics",
    "rebuild-store", "dashboards", "report", "drift",
}  # fmt: skip
TOOLS = {"demo", "bench", "bench-memory", "bench-console", "bench-device", "chaos"}

# Runs where ``tools`` cannot be imported, as in the image: the entry in sys.modules makes
# ``import tools`` raise ModuleNotFoundError before services.cli is first imported.
WITHOUT_TOOLS = """
import json, sys
sys.modules["tools"] = None
from services.cli import build_parser
parser = build_parser()
commands = parser._subparsers._group_actions[0].choices
try:
    parser.parse_args(["bench"])
    bench = "parsed"
except SystemExit as exit:
    bench = exit.code
print(json.dumps({"commands": sorted(commands), "bench": bench,
                  "score": parser.parse_args(["score"]).command}))
"""


def _commands() -> set[str]:
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    return set(subparsers._group_actions[0].choices)


def test_with_the_tools_fraud_lists_every_command() -> None:
    assert _commands() == RUNTIME | TOOLS


def test_each_tool_command_runs_a_handler_of_the_tools() -> None:
    for argv in (
        ["demo"],
        ["bench"],
        ["bench-memory"],
        ["bench-console"],
        ["bench-device"],
        ["chaos", "--scenario", "scorer-kill"],
    ):
        args = build_parser().parse_args(argv)
        assert args.handler.__module__.split(".")[0] == "tools", argv


def test_without_the_tools_fraud_keeps_the_runtime_commands() -> None:
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_TOOLS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(run.stdout)
    assert set(result["commands"]) == RUNTIME
    assert result["bench"] == 2  # argparse: invalid choice
    assert result["score"] == "score"
