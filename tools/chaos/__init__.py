"""Fault injection (``fraud chaos``): crashes and outages during replays, audited.

This module adds the subcommand to ``fraud``; its handler imports the scenarios
(:mod:`tools.chaos.scenarios`) only when it runs.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.cli import AddCommand
    from services.common.settings import Settings


NAMES = [
    "scorer-kill",
    "broker-restart",
    "redis-outage",
    "replica-kill",
    "bad-model",
    "producer-outage",
]
"""``scenarios.SCENARIOS``'s names, written out so that ``fraud --help`` does not import them
(``tests/unit/test_chaos_schedule.py`` keeps the two equal)."""
CLUSTER_NAMES = ["broker-leader-stop", "redis-master-kill", "replica-kill"]
"""``scenarios.CLUSTER_SCENARIOS``'s names (``fraud chaos --cluster``), likewise."""


def register(add: AddCommand) -> None:
    """Add ``chaos`` to ``fraud``."""
    p = add(
        "chaos",
        _chaos,
        "fault scenarios on the local stack (restarts its broker and Redis): counts sent, "
        "decided, duplicated, lost; exit 1 if any scenario fails",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=sorted({*NAMES, *CLUSTER_NAMES}),
        help="run this one (repeatable; default: all of the stack's)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="on the stack of `fraud up --cluster` (started if needed): "
        + ", ".join(CLUSTER_NAMES),
    )
    p.add_argument("--transactions", type=int, default=50_000, help="per scenario")
    p.add_argument("--rate", type=float, default=1000.0, help="transactions per second")
    p.add_argument("--seed", type=int, help="for the fault moments (default: drawn, printed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _chaos(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.stack import Stack
    from tools import ensure_model, exit_on_sigterm
    from tools.chaos.scenarios import CLUSTER_SCENARIOS, SCENARIOS, markdown, run

    exit_on_sigterm()

    known = CLUSTER_SCENARIOS if args.cluster else SCENARIOS
    wrong = [n for n in args.scenario or [] if n not in known]
    if wrong:
        where = "with" if not args.cluster else "without"
        print(f"fraud chaos: {', '.join(wrong)} runs only {where} --cluster")
        return 2
    log = (lambda *_: None) if args.json else print
    for name, outcome, _ in Stack(settings).up():  # the single node holds the clean run
        log(f"{name:<28} {outcome}")
    if args.cluster:
        from services.stack.cluster import ClusterStack

        for name, outcome, _ in ClusterStack(settings).up():
            log(f"{name:<28} {outcome}")
    ensure_model(settings, log, progress=not args.json)
    names = args.scenario or list(known)
    results = run(
        settings,
        names,
        count=args.transactions,
        rate_tps=args.rate,
        seed=args.seed,
        log=log,
        cluster=args.cluster,
    )
    report = [r.as_dict() for r in results]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "chaos.json").write_text(json.dumps(report, indent=2))
    (settings.reports_dir / "chaos.md").write_text(markdown(results))
    print(json.dumps(report, indent=2) if args.json else "\n" + markdown(results))
    return 0 if all(r.passed for r in results) else 1
