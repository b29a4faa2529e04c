"""The ``fraud`` command: one console script with a subcommand per job.

Each subcommand imports what it needs when it runs, so ``fraud --help`` stays fast. Settings
are built once here and passed down.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from services.common.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.stack import Stack

    began = time.monotonic()
    rows = Stack(settings).up()
    for name, outcome, seconds in rows:
        print(f"{name:<28} {outcome:<28} {seconds:6.1f} s")
    print(
        f"stack healthy in {time.monotonic() - began:.1f} s; `fraud status` shows it, "
        "`fraud down` stops it"
    )
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.stack import Stack

    for name, was_running in Stack(settings).down():
        print(f"{name:<12} {'stopped' if was_running else 'was not running'}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from services.stack.stack import Stack

    services = Stack(settings).status()
    if args.json:
        print(json.dumps([asdict(s) for s in services], indent=2))
    else:
        for s in services:
            state = "ready" if s.ready else ("running, not ready" if s.pid else "down")
            rss = f"{s.rss_mib:7.1f} MiB" if s.rss_mib is not None else " " * 11
            print(f"{s.name:<12} {s.address:<18} {state:<20} pid {s.pid or '-':<8} {rss}  {s.log}")
    return 0 if all(s.ready for s in services) else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraud",
        description="Real-time card fraud detection: stack, data, features, model, scoring.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("up", _up, "install what is missing, start Kafka, Redis and Prometheus, create topics")
    add("down", _down, "stop every service `fraud up` started")
    add(
        "status", _status, "show each service's pid, health and memory (exit 3 if any is down)"
    ).add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 ok, 1 a clear failure (message on stderr), 2 usage."""
    from pydantic import ValidationError

    from services.stack.errors import StackError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"fraud: bad FRAUD_ setting:\n{error}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except StackError as error:
        print(f"fraud {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
