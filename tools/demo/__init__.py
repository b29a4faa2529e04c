"""The main job (``fraud demo``, :mod:`tools.demo.job`): the handbook's test week through Kafka
and the scorer.

This module adds the subcommand to ``fraud``; its handler imports the job (numpy, pandas) only
when it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.cli import AddCommand
    from services.common.settings import Settings


def register(add: AddCommand) -> None:
    """Add ``demo`` to ``fraud``."""
    from services.cli import iso_date

    p = add("demo", _demo, "the main job: backfill, train if needed, score a replayed week")
    p.add_argument(
        "--from",
        dest="start",
        type=iso_date,
        default=dt.date(2018, 8, 8),  # job.DEFAULT_START
        help="first day of the replay (default 2018-08-08, the chapter 3 test week)",
    )
    p.add_argument("--days", type=int, default=7, help="days to replay from --from (default 7)")
    p.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="transactions per second (0: as fast as possible)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from tools.demo.job import format_summary, run

    log = (lambda *_: None) if args.json else print
    summary = run(
        settings,
        start=args.start,
        days=args.days,
        rate_tps=args.rate,
        progress=not args.json,
        log=log,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\n" + format_summary(summary))
    api = f"http://{settings.api.host}:{settings.api.port}"
    fraud = _command_name()
    print(f"""
The stack, the scoring and recording workers and the API keep running. Query them:
  KEY=$({fraud} api-key create --role viewer --name me --quiet)
  curl -H "X-API-Key: $KEY" {api}/v1/decisions/1240489
  curl -H "X-API-Key: $KEY" {api}/v1/decisions/1240489/explanation
  curl -H "X-API-Key: $KEY" '{api}/v1/decisions?outcome=review&limit=5'
API docs: {api}/docs   metrics: {settings.prometheus.url} (query fraud_decisions_total)
Stop everything: {fraud} down   (or: make down)""")
    return 0


def _command_name() -> str:
    """How the user can run ``fraud`` again from here: ``fraud`` when that is on the PATH
    and is this one, else this executable's path (``.venv/bin/fraud`` after ``make run``)."""
    import os
    import shutil
    import sys

    me = os.path.abspath(sys.argv[0])
    found = shutil.which("fraud")
    if found and os.path.abspath(found) == me:
        return "fraud"
    return os.path.relpath(me) if me.startswith(os.getcwd() + os.sep) else me
