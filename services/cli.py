"""The ``fraud`` command: one console script with a subcommand per job.

Each subcommand imports what it needs when it runs, so ``fraud --help`` stays fast. Settings
are built once here and passed down. The runtime's subcommands are defined here; the tools'
(``bench``, ``bench-console``, ``bench-device``, ``bench-memory``, ``chaos``, ``demo``) by
the tools themselves (:func:`tools.register`), added only where the ``tools`` package is
installed: the runtime image ships without it. Knows nothing else of the tools.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
"""Runs one subcommand with its parsed arguments; returns the exit status."""
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]
"""``add(name, handler, help)``: a subcommand of ``fraud`` that runs ``handler``; returns its
parser, for its arguments."""
DEVICE_HELP = (
    "where XGBoost trains (default: FRAUD_TRAINING_DEVICE, auto: CUDA where XGBoost can train"
    " there; cpu reproduces the README's figures)"
)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.stack import Stack

    began = time.monotonic()
    rows = Stack(settings).up(cluster=args.cluster)
    if args.apps:
        from services.stack.apps import start_apps

        rows += start_apps(settings)
    for name, outcome, seconds in rows:
        print(f"{name:<28} {outcome:<28} {seconds:6.1f} s")
    print(
        f"stack healthy in {time.monotonic() - began:.1f} s; `fraud status` shows it, "
        "`fraud down` stops it"
    )
    if not args.apps and not args.cluster:
        from services.stack.apps import our_processes

        if any(proc.pid() is None for proc in our_processes(settings)):
            print("the scorer, the recorder and the API: `fraud up --apps` starts them")
    if args.cluster:
        from services.stack.cluster import client_environment

        print("\nthe cluster's settings (also in var/cluster.env), for every process that uses it:")
        for key, value in client_environment(settings).items():
            print(f"export {key}={value}")
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


def iso_date(text: str) -> dt.date:
    """An argparse ``type`` for a day given as YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from error


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number from ``minimum`` (to ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({bound})")
        return value

    return parse


def number(minimum: float, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number from ``minimum`` (or ``above`` it)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            bound = f"above {minimum:g}" if above else f"{minimum:g} or more"
            raise argparse.ArgumentTypeError(f"{text} is out of range (a finite number {bound})")
        return value

    return parse


def field_column(text: str) -> tuple[str, str]:
    """An argparse ``type`` for FIELD=COLUMN, both non-empty."""
    field, _, column = text.partition("=")
    if not field or not column:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=COLUMN (e.g. amount=TX_AMOUNT)")
    return field, column


def setting_errors(error: Any) -> str:
    """A settings ``ValidationError`` as lines naming the variable to change
    (``FRAUD_SCORER__INFERENCE: Input should be 'trees', ...``), never its value (it may be
    a secret)."""
    from services.common.errors import plain_message

    lines = []
    for e in error.errors():
        path = "__".join(str(p).upper() for p in e["loc"])
        lines.append(f"  FRAUD_{path}: {plain_message(e)}" if path else f"  {plain_message(e)}")
    return "\n".join(lines)


def dependency_failure(error: BaseException) -> str | None:
    """A sentence for an error that says a file, Redis or Kafka could not be reached or
    read, or None for any other error (a bug, whose traceback must be seen)."""
    classes = type(error).__mro__
    names = {c.__name__ for c in classes}
    if any(c.__module__.split(".")[0] == "redis" for c in classes):
        if names & {"AuthenticationError", "AuthenticationWrongNumberOfArgsError"}:
            return (
                f"Redis refused the credentials ({error}): check FRAUD_REDIS__USERNAME and "
                "FRAUD_REDIS__PASSWORD"
            )
        if "ResponseError" in names and "DB index is out of range" in str(error):
            return (
                "Redis has no such database: FRAUD_REDIS__DB must be below the server's "
                "`databases` setting (16 by default)"
            )
    if any(c.__module__.split(".")[0] == "redis" for c in classes) and any(
        c.__name__ in ("ConnectionError", "TimeoutError") for c in classes
    ):
        return f"Redis did not answer ({error}); is the stack up? `fraud status`, `fraud up`"
    if any(c.__module__.split(".")[0] in ("kafka", "aiokafka") for c in classes) and any(
        c.__name__ == "KafkaError" for c in classes
    ):
        return f"Kafka did not answer ({error}); is the stack up? `fraud status`, `fraud up`"
    if isinstance(error, OSError):
        return str(error)
    return None


def _data(args: argparse.Namespace, settings: Settings) -> int:
    from services.common import handbook

    if args.force and not args.fetch:
        print("--force goes with --fetch (it downloads the data again)", file=sys.stderr)
        return 2
    if args.fetch:
        from tqdm import tqdm

        bars: list[tqdm[None]] = []  # made at the first download: none when all is kept

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(total=total, desc="downloading daily files", unit="file"))
            bars[0].update(done - bars[0].n)

        written = handbook.fetch(settings.data_dir, progress=progress, force=args.force)
        for bar in bars:
            bar.close()
        for name in (handbook.TRANSACTIONS_FILE, handbook.REFERENCE_FILE):
            path = settings.data_dir / name
            print(
                f"wrote {path}"
                if path in written
                else f"kept {path} (already there; --force downloads it again)",
                file=sys.stderr if args.json else sys.stdout,  # --json prints JSON alone
            )
    frame = handbook.load_transactions(settings.data_dir)
    info = {"data_dir": str(settings.data_dir), **handbook.summary(frame)}
    if args.json:  # load_transactions checked the schema: as the text's last line says
        print(json.dumps({**info, "schema": "ok"}, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:<12} {value}")
        print("schema       ok (handbook layout); events: ids as strings, event time UTC")
    return 0


def _features(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from services.common.handbook import load_transactions
    from services.features.batch import compute_features

    if args.end <= args.start:
        print("--to is the day after the last: it must be after --from", file=sys.stderr)
        return 2
    if args.out.suffix != ".parquet":
        print(
            f"--out {args.out}: the features are written as Parquet: name it .parquet",
            file=sys.stderr,
        )
        return 2
    # the windows need 37 days of history before the first requested day
    history_start = args.start - dt.timedelta(days=40)
    frame = load_transactions(settings.data_dir, history_start, args.end)
    features = compute_features(frame)
    keep = (frame["TX_DATETIME"] >= pd.Timestamp(args.start)).to_numpy()
    out = features[keep].reset_index(drop=True)
    context = frame.loc[keep, ["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD"]]
    for i, col in enumerate(context.columns, start=1):
        out.insert(i, col, context[col].to_numpy())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(args.out, index=False)
    print(f"wrote {len(out)} transactions x {len(features.columns) - 1} features to {args.out}")
    return 0


def _feature_store(args: argparse.Namespace, settings: Settings) -> int:
    from services.common.feast_store import apply

    print(apply(settings))
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from models.train import run_training

    version, metadata = run_training(
        settings,
        training_start=args.start,
        quick=args.quick,
        device_preference=args.device,
        promote=not args.no_promote,
    )
    if args.json:
        print(json.dumps(metadata, indent=2))
        return 0
    window, validation = metadata["training_window"], metadata["metrics"]["validation"]
    print(f"model {version}: {metadata['feature_set']} {metadata['params']}")
    print(
        f"  trained on {window['start']}..{window['end']} ({window['rows']} transactions) "
        f"on {metadata['device']} in {metadata['training_seconds']:.2f} s"
    )
    print(
        f"  validation (4 prequential weeks): AUC ROC {validation['auc_roc']:.3f}, "
        f"AP {validation['average_precision']:.3f}, "
        f"CP@100 {validation['card_precision_at_100']:.3f}"
    )
    print(
        f"  thresholds: review >= {metadata['thresholds']['review']:.4f}, "
        f"decline >= {metadata['thresholds']['decline']:.4f}"
    )
    print(
        f"  {'active' if not args.no_promote else 'registered, not active'}; "
        f"files in {settings.models_dir / version}"
    )
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from models.evaluate import evaluate, format_report

    report = evaluate(settings, version=args.model, device_preference=args.device)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    from models.backtest import backtest, format_report, load_policy
    from models.registry import ModelRegistry

    version = args.model or ModelRegistry(settings.models_dir).active()
    if version is None:
        print("no active model: run `fraud train`, or name one with --model", file=sys.stderr)
        return 2
    if args.end <= args.start:
        print("--to is the day after the last: it must be after --from", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.policy)
    except (OSError, ValueError) as error:
        print(f"--policy {args.policy}: {error}", file=sys.stderr)
        return 2
    report = backtest(settings, version, policy, args.start, args.end)
    report["policy_file"] = f"policy from {args.policy}" if args.policy else None
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from services.producer.replay import send_all
    from services.producer.sources import read_file, replay_events, simulated_events

    if args.metrics_port is not None:
        from services.common.metrics import serve_metrics

        serve_metrics(settings, "producer", port=args.metrics_port, host=args.metrics_host)
    if args.start and args.end and args.end <= args.start:
        print("--to is the day after the last: it must be after --from", file=sys.stderr)
        return 2
    again = ""  # what a rerun adds to resume the same stream
    if args.simulate:
        if args.seed is None:  # a new stream: a rerun's ids must not be this run's
            import secrets

            args.seed = secrets.randbelow(2**31)
        again = f"--seed {args.seed} "
        if not args.json:
            print(f"simulator seed {args.seed} (transaction ids sim-{args.seed}-n<serial>)")
        events = simulated_events(args.customers, args.terminals, seed=args.seed)
        total = args.count
    else:
        mapping = dict(args.column)
        frame = read_file(args.file or settings.data_dir / "transactions.parquet", mapping)
        events = replay_events(frame, args.start, args.end, args.label_lead_days)
        if args.no_labels:
            events = (e for e in events if e.topic == "transactions")
        times = frame["event_time"]
        total = int(
            ((times >= _utc(args.start, times.min())) & (times < _utc(args.end, None))).sum()
        )
        total = min(total, args.count) if args.count else total
    with tqdm(total=total, desc="transactions sent", unit="tx", disable=args.json) as bar:
        stats = send_all(
            settings,
            events,
            args.rate,
            limit=args.count,
            progress=bar,
            skip_events=args.skip_events,
            max_outage_s=args.max_outage_s,
        )
    result = {
        "seed": args.seed if args.simulate else None,
        "sent": stats.sent,
        "delivered": stats.delivered,
        "seconds": round(stats.seconds, 3),
        "rate_tps": round(stats.transactions / max(stats.seconds, 1e-9), 1),
        "resume_at": stats.resume_at,
        "error": stats.error,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"sent {stats.counts()} in {stats.seconds:.1f} s ({result['rate_tps']} tx/s)")
    if stats.error is None:
        return 0
    print(
        f"fraud produce: stopped: {stats.error}. {stats.delivered} of {stats.events} records "
        f"were acknowledged; every event before event {stats.resume_at} was. Resume with the "
        f"same arguments and {again}--skip-events {stats.resume_at} (events after it that did "
        "arrive are sent again; the scorer decides each transaction once).",
        file=sys.stderr,
    )
    return 4


def _utc(day: dt.date | None, default: object) -> object:
    import pandas as pd

    return pd.Timestamp(day, tz="UTC") if day else (default or pd.Timestamp.max.tz_localize("UTC"))


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack.topics import ensure_topics

    for topic, outcome in ensure_topics(settings).items():
        print(f"{topic:<28} {outcome}")
    return 0


def _rebuild_store(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import dataclasses
    import json
    import logging

    from services.scorer.rebuild_store import rebuild

    # the command says what failed itself: aiokafka's error line for each refused connection,
    # printed before it, only repeated it
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    done = asyncio.run(rebuild(settings))
    if args.json:
        print(json.dumps(dataclasses.asdict(done)))
    else:
        print(
            f"read {done.records} decisions from {settings.topics.decisions.name} in "
            f"{done.seconds} s: {done.stored} stored, {done.expired} past the retention, "
            f"{done.records - done.stored - done.expired} already in the store"
        )
    return 0


def _dashboards(args: argparse.Namespace, settings: Settings) -> int:
    from services.observability.dashboards import write

    print(f"wrote {write()}")
    return 0


def _drift(args: argparse.Namespace, settings: Settings) -> int:
    from services.observability.drift import drift_report, format_report

    report = drift_report(settings)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from services.observability.report import write_report

    for path in write_report(settings, minutes=args.minutes):
        print(f"wrote {path}")
    return 0


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from services.scorer.worker import main as worker_main

    return worker_main(settings)


def _record(args: argparse.Namespace, settings: Settings) -> int:
    from services.scorer.worker import main as worker_main

    return worker_main(settings, recorder=True)


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from services.common.connections import redis_client
    from services.common.handbook import load_transactions
    from services.scorer.backfill import backfill, reset

    client = redis_client(settings.redis)
    if args.reset:
        print(f"deleted {reset(client)} feature-state keys")
    began = time.monotonic()
    history = load_transactions(settings.data_dir, None, args.until)
    counts = backfill(client, history, args.until, row_ttl_ms=settings.store.feature_row_ttl_ms)
    print(
        f"feature state as of {args.until} 00:00 UTC in {time.monotonic() - began:.1f} s: {counts}"
    )
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from services.api.app import main as api_main

    return api_main(settings)


def _api_key(args: argparse.Namespace, settings: Settings) -> int:
    from services.api.keys import create_key, list_keys, revoke_key
    from services.common.connections import redis_client
    from services.common.events import mask_card_numbers

    client = redis_client(settings.redis)
    if args.action == "create":
        try:
            key = create_key(client, args.name, args.role)
        except ValueError as error:
            print(f"fraud api-key create: {error}", file=sys.stderr)
            return 2
        print(key if args.quiet else f"{args.role} key for {args.name} (shown once):\n{key}")
    elif args.action == "list":
        for row in list_keys(client):
            print(f"{row['key_id']:<14} {row['role']:<8} {row['name']:<24} {row['created_at']}")
    else:
        key_id = args.key_id or args.id
        if not key_id:
            print("fraud api-key revoke: name the key (KEY_ID)", file=sys.stderr)
            return 2
        # the whole key (a leaked one is often all its holder has): its id is its second
        # part, and its secret is never printed back
        key_id = key_id.split("_")[1] if key_id.count("_") == 2 else key_id
        if not revoke_key(client, key_id):
            print(f"no such key: {mask_card_numbers(key_id)[:64]}", file=sys.stderr)
            return 1
        print(f"revoked {key_id}")
    return 0


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

    p = add("up", _up, "install what is missing, start Kafka, Redis and Prometheus, create topics")
    topology = p.add_mutually_exclusive_group()
    topology.add_argument(
        "--cluster",
        action="store_true",
        help="instead of one broker and one Redis: three KRaft brokers (replication 3, "
        "min.insync.replicas 2) and a Redis Cluster of three masters with a replica each",
    )
    topology.add_argument(
        "--apps",
        action="store_true",
        help="then start the scoring worker, the recording worker and the API, as `fraud "
        "demo` does (needs an active model); each ready before the next",
    )
    add("down", _down, "stop every service `fraud up` started")
    add(
        "status", _status, "show each service's pid, health and memory (exit 3 if any is down)"
    ).add_argument("--json", action="store_true", help="print JSON")

    p = add("data", _data, "check the handbook data in FRAUD_DATA_DIR and summarise it")
    p.add_argument(
        "--fetch",
        action="store_true",
        help="download it from the handbook's public repositories first (a file already"
        " there whole is kept)",
    )
    p.add_argument("--force", action="store_true", help="with --fetch: download every file again")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("features", _features, "write batch features of a date range to Parquet")
    p.add_argument("--from", dest="start", type=iso_date, required=True, help="first day")
    p.add_argument("--to", dest="end", type=iso_date, required=True, help="day after the last")
    p.add_argument("--out", type=Path, required=True, help="output .parquet file")

    add("feature-store", _feature_store, "run `feast apply` on feature_store/")

    p = add(
        "train",
        _train,
        "select hyperparameters by prequential validation, train, register and activate a model",
    )
    p.add_argument(
        "--start",
        type=iso_date,
        default=dt.date(2018, 7, 25),
        help="first day of the training week (default 2018-07-25, chapter 3)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.add_argument("--quick", action="store_true", help="a 12-candidate grid instead of 108")
    p.add_argument("--no-promote", action="store_true", help="register without activating")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")

    p = add(
        "produce",
        _produce,
        "replay a transaction file into Kafka, with its labels (or a simulator's transactions)",
    )
    p.add_argument("--file", type=Path, help="Parquet or CSV (default: the handbook data)")
    p.add_argument(
        "--column",
        action="append",
        type=field_column,
        default=[],
        metavar="FIELD=COLUMN",
        help="map a contract field to a file column (default: the handbook layout)",
    )
    p.add_argument("--from", dest="start", type=iso_date, help="first day")
    p.add_argument("--to", dest="end", type=iso_date, help="day after the last")
    p.add_argument(
        "--rate",
        type=number(0),
        default=0.0,
        help="transactions per second (0: as fast as possible)",
    )
    p.add_argument("--count", type=whole(1), help="stop after this many transactions")
    p.add_argument(
        "--label-lead-days",
        type=number(0),
        default=1.0,
        help="send each label this long before the delayed window counts it",
    )
    p.add_argument("--simulate", action="store_true", help="a seeded simulator instead of a file")
    p.add_argument(
        "--no-labels", action="store_true", help="replay the transactions alone, no labels"
    )
    p.add_argument(
        "--skip-events",
        type=whole(0),
        default=0,
        metavar="N",
        help="skip the stream's first N events (the resume point an interrupted run printed)",
    )
    p.add_argument(
        "--max-outage-s",
        type=number(0),
        default=300.0,
        metavar="S",
        help="wait this long for an unreachable broker, then stop and print where to resume "
        "(exit 4)",
    )
    p.add_argument(
        "--customers", type=whole(1), default=5000, help="cards of the simulator (--simulate)"
    )
    p.add_argument(
        "--terminals",
        type=whole(1),
        default=10000,
        help="terminals of the simulator (--simulate)",
    )
    p.add_argument(
        "--seed",
        type=whole(0),
        help="the simulator's seed (--simulate; default: a new one, printed). The same seed "
        "gives the same transaction ids with new event times: those the scorer already "
        "decided go to the dead-letter topic as reused_transaction_id",
    )
    p.add_argument("--json", action="store_true", help="print JSON, no progress bar")
    p.add_argument(
        "--metrics-port", type=whole(0, 65535), help="serve /metrics on this port (0: any)"
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of /metrics (default 127.0.0.1)"
    )

    add("score", _score, "run the scoring worker (Faust) until stopped")
    add(
        "record",
        _record,
        "run the recording worker (terminal state, decision store) until stopped",
    )
    add("topics", _topics, "create the contract topics and set their retention (idempotent)")
    p = add(
        "rebuild-store",
        _rebuild_store,
        "refill the decision store from the decisions topic (idempotent; first decision wins)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")

    add("dashboards", _dashboards, "generate infra/grafana/dashboards/*.json from code")

    p = add("report", _report, "plot the last run's latency and throughput from Prometheus")
    p.add_argument(
        "--minutes", type=number(0, above=True), default=30.0, help="how far back to look"
    )

    p = add("drift", _drift, "PSI of each model input and of the score, from Prometheus")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("backfill", _backfill, "load feature state from the handbook history before a day")
    p.add_argument("--until", type=iso_date, required=True, help="state as of this day, 00:00 UTC")
    p.add_argument("--reset", action="store_true", help="delete all feature state first")

    add("api", _api, "serve the admin API (FastAPI) on FRAUD_API__HOST:PORT")

    p = add("api-key", _api_key, "create, list or revoke API keys (stored hashed in Redis)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("id", nargs="?", metavar="KEY_ID", help="the key to revoke (revoke)")
    p.add_argument("--name", default="cli", help="who the key is for (create)")
    p.add_argument("--role", choices=["viewer", "analyst", "admin"], default="viewer")
    p.add_argument("--key-id", help="the key to revoke, as KEY_ID")
    p.add_argument("--quiet", action="store_true", help="print the key alone (create)")

    p = add("evaluate", _evaluate, "chapter 3 and chapter 5 metrics beside the published ones")
    p.add_argument("--model", help="version (default: the active one)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("backtest", _backtest, "decide history with a model and a policy; per-day report")
    p.add_argument("--model", help="version (default: the active one)")
    p.add_argument(
        "--policy", type=Path, help="policy JSON (PUT /v1/policy's body); default: the model's"
    )
    p.add_argument("--from", dest="start", type=iso_date, required=True, help="first day")
    p.add_argument("--to", dest="end", type=iso_date, required=True, help="day after the last")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_tools(add)
    return parser


def _add_tools(add: AddCommand) -> None:
    """Add the tools' subcommands where the ``tools`` package is installed (not in the image)."""
    try:
        import tools
    except ModuleNotFoundError as error:
        if error.name != "tools":
            raise  # the tools are there but one of their imports is broken: say which
        return
    register: Callable[[AddCommand], None] | None = getattr(tools, "register", None)
    if register is not None:  # else another distribution's top-level ``tools``, not ours
        register(add)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 ok, 1 a clear failure (message on stderr), 2 usage;
    also 3 from ``fraud status`` (a service down), 4 from ``fraud produce`` (records left
    undelivered after a broker outage), 70 from a worker that missed its stop deadline,
    130 on Ctrl-C."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from models.device import DeviceUnavailable
    from models.registry import RegistryError
    from services.common.feast_store import FeatureStoreError
    from services.common.handbook import DataError
    from services.observability.report import ReportError
    from services.stack.errors import StackError

    # ibis, duckdb and kafka-python warn about their own dependencies' APIs; not actionable here
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"fraud: bad FRAUD_ setting:\n{setting_errors(error)}", file=sys.stderr)
        return 2
    except SettingsError as error:  # a FRAUD_<SECTION> that is not JSON, before validation
        print(f"fraud: bad FRAUD_ setting: {error}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except (
        StackError,
        DataError,
        RegistryError,
        FeatureStoreError,
        ReportError,
        DeviceUnavailable,
    ) as error:
        print(f"fraud {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        message = dependency_failure(error)
        if message is None:
            raise
        print(f"fraud {args.command}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
