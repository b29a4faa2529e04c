"""Benchmarks: open-loop load against the passthrough worker and the scorer (``fraud bench``,
:mod:`tools.bench.runner`), Redis memory per card and terminal (``fraud bench-memory``,
:mod:`tools.bench.memory_report`), the console's pages (``fraud bench-console``,
:mod:`tools.bench.console_pages`) and the model on CPU against GPU (``fraud bench-device``,
:mod:`tools.bench.device`).

This module adds these subcommands to ``fraud``; their handlers import the benchmark modules
(numpy, psutil, matplotlib) only when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.cli import AddCommand
    from services.common.settings import Settings


def register(add: AddCommand) -> None:
    """Add ``bench``, ``bench-memory``, ``bench-console`` and ``bench-device`` to ``fraud``."""
    p = add("bench", _bench, "open-loop rate ladder: passthrough worker against the scorer")
    p.add_argument(
        "--rates",
        default="250,500,1000,2000,3000,4000,5000,6000,8000",  # runner.DEFAULT_RATES
        help="comma-separated transactions per second",
    )
    p.add_argument("--seconds", type=float, default=15.0, help="duration of each step")
    p.add_argument("--fixed", action="store_true", help="fixed arrivals instead of Poisson")
    p.add_argument(
        "--workload",
        choices=("simulated", "handbook"),  # runner.WORKLOADS
        default="simulated",
        help="simulated cards with empty histories, or the handbook's test week on after a"
        " backfill (the main job's cards, with their history)",
    )
    p.add_argument(
        "--targets",
        default=None,
        help="comma-separated, default all: passthrough (Faust), aiokafka-passthrough (no"
        " Faust), scorer",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add(
        "bench-memory",
        _bench_memory,
        "Redis bytes per card, terminal, id and decision at 5k, 50k and 500k cards",
    )
    p.add_argument(
        "--customers",
        default="5000,50000,500000",  # memory_report.DEFAULT_POPULATIONS
        help="comma-separated numbers of cards (terminals: twice as many)",
    )
    p.add_argument("--days", type=float, default=120.0, help="days of simulated stream")
    p.add_argument("--sample-cards", type=int, default=1000, help="cards measured per population")
    p.add_argument("--sample-terminals", type=int, default=2000, help="terminals measured")
    p.add_argument(
        "--levelling-retention-s",
        type=float,
        default=20.0,  # memory_report.LEVELLING_RETENTION_S
        help="the retention check: decisions at 1,000/s kept this long, for three times as"
        " long; the store must stop growing (0 skips it)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add(
        "bench-console",
        _bench_console,
        "the analyst console's server time per page with a million decisions stored",
    )
    p.add_argument("--decisions", type=int, default=1_000_000, help="decisions stored")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add(
        "bench-device",
        _bench_device,
        "XGBoost on CPU against GPU: training time and average precision, inference at"
        " micro-batches of 1 to 1,000",
    )
    p.add_argument(
        "--export",
        type=Path,
        metavar="FILE",
        help="only write the data (.npz) for `python -m tools.bench.device FILE` on another"
        " machine",
    )
    p.add_argument("--data", type=Path, metavar="FILE", help="measure this export, not a new one")
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated, of cpu and cuda")
    p.add_argument("--repeats", type=int, default=3, help="timed fits after the first")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _bench_device(args: argparse.Namespace, settings: Settings) -> int:
    from tools.bench.device import DEVICES, export, markdown, measure

    devices = tuple(args.devices.split(","))
    if any(d not in DEVICES for d in devices) or args.repeats < 1:
        print(
            f"fraud bench-device: --devices takes {', '.join(DEVICES)}; --repeats at least 1",
            file=sys.stderr,
        )
        return 2
    log = (lambda *_: None) if args.json else print
    if args.export:
        export(settings, args.export, log)
        return 0
    data = args.data or settings.reports_dir / "device-data.npz"
    if not args.data:
        export(settings, data, log)
    report = measure(data, devices, args.repeats, log=log)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "device.json").write_text(json.dumps(report, indent=2))
    (settings.reports_dir / "device.md").write_text(markdown(report))
    print(json.dumps(report, indent=2) if args.json else "\n" + markdown(report))
    return 0


def _bench_console(args: argparse.Namespace, settings: Settings) -> int:
    from tools import ensure_model
    from tools.bench.console_pages import run

    log = (lambda *_: None) if args.json else print
    ensure_model(settings, log, progress=not args.json)
    report = run(settings, decisions=args.decisions, log=log)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.stack import Stack
    from tools import ensure_model, exit_on_sigterm
    from tools.bench.runner import TARGETS, markdown, run

    exit_on_sigterm()

    targets = tuple(args.targets.split(",")) if args.targets else TARGETS
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        print(
            f"fraud bench: unknown target(s) {', '.join(unknown)}; choose from "
            f"{', '.join(TARGETS)}",
            file=sys.stderr,
        )
        return 2
    rates = tuple(float(r) for r in args.rates.split(","))
    log = (lambda *_: None) if args.json else print
    for name, outcome, _ in Stack(settings).up():
        log(f"{name:<28} {outcome}")
    if "scorer" in targets:
        ensure_model(settings, log, progress=not args.json)  # else it would run degraded
    report = run(
        settings,
        rates=rates,
        seconds=args.seconds,
        poisson=not args.fixed,
        targets=targets,
        log=log,
        workload=args.workload,
    )
    print(json.dumps(report, indent=2) if args.json else "\n" + markdown(report))
    return 0


def _bench_memory(args: argparse.Namespace, settings: Settings) -> int:
    from tools import exit_on_sigterm
    from tools.bench.memory_report import markdown, run

    exit_on_sigterm()

    report = run(
        settings,
        populations=tuple(int(n) for n in args.customers.split(",")),
        days=args.days,
        cards=args.sample_cards,
        terminals=args.sample_terminals,
        log=(lambda *_: None) if args.json else print,
        levelling_retention_s=args.levelling_retention_s,
    )
    print(json.dumps(report, indent=2) if args.json else "\n" + markdown(report))
    return 0
