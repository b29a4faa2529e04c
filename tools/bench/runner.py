"""``fraud bench``: the passthrough workers and the scorer under a ladder of open-loop rates.

Each target runs as its own process in a private namespace (topic prefix, consumer group)
on the local stack's Kafka, and against a Redis server of the run's own, persisting as the
stack's does (append-only file): what other runs and tests left in the stack's Redis does not
slow it (an append-only-file rewrite forks and copies the whole dataset; with 250 MB of test
leftovers one took a core for 2 s in the middle of a step).

For each rate it sends ``step_seconds`` of simulated transactions and reports end-to-end
latency percentiles (send to output record), achieved throughput, the backlog left at the
end, and the worker's CPU and resident memory. The scorer's target is the scoring worker with
a recording worker beside it (terminal state and decision store, as ``fraud demo`` runs it):
the recorder's CPU is reported with the neighbours'. A rate is sustained when p99 <= 50 ms
and every record came back within a short grace period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import uvloop

from load_tests.kafka_load import Timings, arrivals, send_step
from services.common.settings import PROJECT_ROOT, Settings
from services.producer.sources import simulated_events
from services.stack.redis_server import acl_rules
from tools.bench.private_redis import private_redis

DEFAULT_RATES = (250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000)
SLO_P99_S = 0.050
GRACE_S = 3.0
PASSTHROUGHS = {"passthrough": "faust", "aiokafka-passthrough": "aiokafka"}
"""Baseline targets: a Faust agent, and plain aiokafka clients (what Faust itself costs)."""
TARGETS = (*PASSTHROUGHS, "scorer")


WORKLOADS = ("simulated", "handbook")
"""``simulated``: the seeded simulator's 5,000 cards and 10,000 terminals, starting with empty
histories; ``handbook``: the handbook's transactions from the chapter 3 test week on, after the
feature state was backfilled to its first day, as in the main job (cards then carry 45 days of
history: 1.4 to 1.9 times the scorer's CPU per transaction of the simulated workload)."""


def _events(
    seed: int, workload: str = "simulated", settings: Settings | None = None
) -> Iterator[tuple[str, bytes, bytes]]:
    if workload == "handbook" and settings is not None:
        from services.producer.sources import read_file, replay_events
        from tools.demo.job import DEFAULT_START

        frame = read_file(settings.data_dir / "transactions.parquet")
        for event in replay_events(frame, DEFAULT_START, None):
            if event.topic == "transactions":
                yield event.transaction_id, event.key, event.value
        return
    for event in simulated_events(customers=5000, terminals=10000, seed=seed):
        yield event.transaction_id, event.key, event.value


def _start(
    target: str, settings: Settings, env: dict[str, str], command: str = "score"
) -> subprocess.Popen[bytes]:
    if target in PASSTHROUGHS:
        argv = [
            sys.executable,
            "-m",
            "tools.bench.passthrough",
            "--source",
            settings.topics.transactions.name,
            "--sink",
            settings.topics.decisions.name,
            "--group",
            env["FRAUD_SCORER__APP_ID"],
            "--engine",
            PASSTHROUGHS[target],
        ]
    else:
        argv = [sys.executable, "-m", "services.cli", command]
    name = target if command == "score" else f"{target}-{command}"
    log = open(settings.var_dir / "log" / f"bench-{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )


async def _warm_up(
    producer: Any,
    settings: Settings,
    receiver_timings: Timings,
    events: Iterator[tuple[str, bytes, bytes]],
) -> None:
    """Send a trickle until records come back: the worker has joined and is serving."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await send_step(
            producer,
            settings.topics.transactions.name,
            events,
            arrivals(50, 1.0, False),
            receiver_timings,
        )
        if receiver_timings.received:
            await asyncio.sleep(2)
            return
    raise TimeoutError("the worker never answered; see var/log/bench-*.log")


async def _step(
    producer: Any,
    settings: Settings,
    proc: psutil.Process,
    rate: float,
    seconds: float,
    poisson: bool,
    events: Iterator[tuple[str, bytes, bytes]],
    timings: Timings,
    companions: dict[str, psutil.Process],
) -> dict[str, Any]:
    before = set(timings.sent)
    step = Timings(sent={}, received=timings.received, produced=timings.produced)
    others = {**_neighbours(settings), **companions}
    others0 = {name: _cpu_s(p) for name, p in others.items()}
    machine0 = psutil.cpu_times()
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    await send_step(
        producer,
        settings.topics.transactions.name,
        events,
        arrivals(rate, seconds, poisson, seed=int(rate)),
        step,
    )
    sent_at_end = time.time()
    backlog_at_end = sum(1 for t in step.sent if t not in timings.received)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(t not in timings.received for t in step.sent):
        await asyncio.sleep(0.1)
    cpu1, wall1 = proc.cpu_times(), time.monotonic()
    machine1 = psutil.cpu_times()
    others_cpu = {
        name: round(100 * (_cpu_s(p) - others0[name]) / (wall1 - wall0), 1)
        for name, p in others.items()
    }
    idle = (machine1.idle + machine1.iowait) - (machine0.idle + machine0.iowait)
    elapsed_cpu_s = sum(machine1) - sum(machine0)
    timings.sent.update(step.sent)
    ids = [t for t in step.sent if t not in before]
    # end to end: from the send to the output record's Kafka timestamp (the worker's clock at
    # publish; same machine): the tap's own reading delays are not the system's latency
    latency = np.array([timings.produced[t] - step.sent[t] for t in ids if t in timings.received])
    in_time = sum(1 for t in ids if timings.produced.get(t, 1e18) <= sent_at_end)
    lost = len(ids) - len(latency)
    pct = (np.percentile(latency, [50, 95, 99]) * 1000).round(2).tolist() if len(latency) else []
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    result = {
        "rate_tps": rate,
        "sent": len(ids),
        "achieved_tps": round(in_time / seconds, 1),
        "p50_ms": pct[0] if pct else None,
        "p95_ms": pct[1] if pct else None,
        "p99_ms": pct[2] if pct else None,
        "max_ms": round(float(latency.max()) * 1000, 2) if len(latency) else None,
        "backlog_at_end": backlog_at_end,
        "not_returned_after_grace": lost,
        "cpu_percent": round(100 * cpu_s / (wall1 - wall0), 1),
        "rss_mib": round(proc.memory_info().rss / 2**20, 1),
        # what shares the machine with the worker, and the whole machine (percent of one
        # core: up to 100 times the cores)
        "cpu_percent_others": others_cpu,
        "machine_cpu_percent": round(100 * (elapsed_cpu_s - idle) / (wall1 - wall0), 1),
    }
    result["sustained"] = bool(pct) and pct[2] / 1000 <= SLO_P99_S and lost == 0
    return result


def _neighbours(settings: Settings) -> dict[str, psutil.Process]:
    """This process (the load generator and the tap) and the processes listening on the
    configured Kafka and Redis ports (when they run on this machine)."""
    procs = {"load_generator": psutil.Process()}
    kafka_port = int(settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    wanted = {kafka_port: "kafka", settings.redis.port: "redis"}
    for conn in psutil.net_connections(kind="tcp"):
        name = wanted.get(conn.laddr.port) if conn.laddr else None
        if name and conn.status == psutil.CONN_LISTEN and conn.pid:
            procs.setdefault(name, psutil.Process(conn.pid))
    return procs


def _cpu_s(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:  # gone (a restart): counts as nothing
        return 0.0
    return float(times.user + times.system + times.children_user + times.children_system)


def bench_target(
    target: str,
    settings: Settings,
    rates: tuple[float, ...],
    seconds: float,
    poisson: bool,
    log: Any = print,
    workload: str = "simulated",
) -> list[dict[str, Any]]:
    """The rate ladder for one target; stops after the first rate it does not sustain."""
    from services.common.connections import redis_client
    from services.stack.topics import delete_namespace_topics, ensure_topics

    unique = uuid.uuid4().hex[:8]
    env = {
        "FRAUD_TOPICS__PREFIX": f"bench{unique}.",
        "FRAUD_REDIS__HOST": settings.redis.host,
        "FRAUD_REDIS__PORT": str(settings.redis.port),
        "FRAUD_REDIS__DB": str(settings.redis.db),
        "FRAUD_SCORER__APP_ID": f"bench-{target}-{unique}",
        "FRAUD_SCORER__METRICS_PORT": "0",
        "FRAUD_RECORDER__METRICS_PORT": "0",
        "FRAUD_VAR_DIR": str(settings.var_dir),
    }
    topics = settings.topics.model_copy(update={"prefix": env["FRAUD_TOPICS__PREFIX"]})
    private = settings.model_copy(update={"topics": topics})
    ensure_topics(private)
    redis_client(settings.redis).flushdb()
    if workload == "handbook" and target == "scorer":
        from services.common.handbook import load_transactions
        from services.scorer.backfill import backfill
        from tools.demo.job import DEFAULT_START

        history = load_transactions(settings.data_dir, None, DEFAULT_START)
        counts = backfill(redis_client(settings.redis), history, DEFAULT_START)
        log(f"backfilled the feature state to {DEFAULT_START}: {counts}")
    (settings.var_dir / "log").mkdir(parents=True, exist_ok=True)
    worker = _start(target, private, env)
    companions = {"recorder": _start(target, private, env, "record")} if target == "scorer" else {}
    try:
        return uvloop.run(  # the load generator takes less of the CPU it shares with them
            _ladder(
                target,
                settings,
                private,
                worker,
                companions,
                rates,
                seconds,
                poisson,
                log,
                workload,
            )
        )
    finally:
        for proc in [worker, *companions.values()]:
            proc.terminate()
        for proc in [worker, *companions.values()]:
            proc.wait(timeout=60)
        redis_client(settings.redis).flushdb()
        delete_namespace_topics(private)


async def _ladder(
    target: str,
    settings: Settings,
    private: Settings,
    worker: subprocess.Popen[bytes],
    companions: dict[str, subprocess.Popen[bytes]],
    rates: tuple[float, ...],
    seconds: float,
    poisson: bool,
    log: Any,
    workload: str = "simulated",
) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaProducer

    from services.common.connections import aiokafka_kwargs
    from tools.decision_tap import DecisionTap

    # the latency is read from the decisions' Kafka timestamps, not from when this reader
    # gets them: it fetches in bulk, so the load generator's process and the broker spend
    # less of the shared CPU on measuring (at 500 tx/s, 24-26 % of a core against 36-37 %
    # fetching each record as it came, two alternating pairs, 2026-12-03)
    receiver = DecisionTap(
        private, keep_records=False, fetch_min_bytes=64 * 1024, fetch_max_wait_ms=100
    ).start()
    timings = Timings(received=receiver.received_at, produced=receiver.produced_at)
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings.kafka), acks=1, linger_ms=1, max_batch_size=64 * 1024
    )
    await producer.start()
    events = _events(seed=len(target), workload=workload, settings=settings)
    steps = []
    try:
        await _warm_up(producer, private, timings, events)
        proc = psutil.Process(worker.pid)
        beside = {name: psutil.Process(p.pid) for name, p in companions.items()}
        for rate in rates:
            result = await _step(
                producer, private, proc, rate, seconds, poisson, events, timings, beside
            )
            result["target"] = target
            steps.append(result)
            log(
                f"{target:<12} {rate:>6} tx/s: achieved {result['achieved_tps']:>7}, "
                f"p99 {result['p99_ms']} ms, backlog {result['backlog_at_end']}, "
                f"cpu {result['cpu_percent']} %"
                + (f" (recorder {result['cpu_percent_others']['recorder']} %)" if beside else "")
                + f", {'ok' if result['sustained'] else 'NOT sustained'}"
            )
            if not result["sustained"]:
                break
    finally:
        await producer.stop()
        receiver.stop()
    return steps


def summarise(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of ``fraud bench --json``."""
    out: dict[str, Any] = {}
    ran = {s["target"] for s in steps}
    for target in [t for t in TARGETS if t in ran or t in ("passthrough", "scorer")]:
        mine = [s for s in steps if s["target"] == target]
        ok = [s for s in mine if s["sustained"]]
        best = max(ok, key=lambda s: s["rate_tps"]) if ok else None
        at_500 = next((s for s in mine if s["rate_tps"] == 500), None)
        out[target] = {
            "max_sustained_tps": best["rate_tps"] if best else 0,
            "p99_ms_at_max": best["p99_ms"] if best else None,
            "p99_ms_at_500": at_500["p99_ms"] if at_500 else None,
        }
    passthrough = out["passthrough"]["max_sustained_tps"]
    out["scorer"]["share_of_passthrough"] = (
        round(out["scorer"]["max_sustained_tps"] / passthrough, 3) if passthrough else None
    )
    return out


def run(
    settings: Settings,
    rates: tuple[float, ...] = DEFAULT_RATES,
    seconds: float = 15.0,
    poisson: bool = True,
    targets: tuple[str, ...] = TARGETS,
    log: Any = print,
    workload: str = "simulated",
) -> dict[str, Any]:
    """The ladder of each target (:data:`TARGETS`) on a :data:`WORKLOADS` workload; writes
    ``var/reports/bench.json``, ``bench.md`` and ``bench.png``.

    Raises:
        ValueError: an unknown target.
        models.registry.RegistryError: no active model for the scorer.
    """
    from models.registry import ModelRegistry, RegistryError

    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown benchmark target(s) {unknown}; choose from {list(TARGETS)}")
    if "scorer" in targets and ModelRegistry(settings.models_dir).active() is None:
        raise RegistryError("the scorer needs an active model: run `fraud train` first")
    with private_redis(persistent=True, acl=acl_rules(settings.redis)) as port:
        bench = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"host": "127.0.0.1", "port": port})}
        )
        calibration = None
        if "scorer" in targets:
            from tools.bench.calibration import calibrate

            calibration = calibrate(bench, bench.redis.db)
            log(f"calibration: Scorer.decide CPU µs per transaction {calibration}")
        steps: list[dict[str, Any]] = []
        for target in targets:
            steps += bench_target(target, bench, rates, seconds, poisson, log, workload)
    report = {
        **summarise(steps),
        "steps": steps,
        "step_seconds": seconds,
        "arrivals": "poisson" if poisson else "fixed",
        "workload": workload,
        "calibration": calibration,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        },
    }
    folder = settings.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(report, indent=2))
    (folder / "bench.md").write_text(markdown(report))
    plot(report, folder / "bench.png")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        "| target | rate tx/s | achieved tx/s | p50 ms | p95 ms | p99 ms | max ms | "
        "backlog at end | lost | CPU % | RSS MiB | recorder / load generator / Kafka / Redis "
        "CPU % | machine CPU % | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["steps"]:
        others = s.get("cpu_percent_others", {})
        neighbours = " / ".join(
            str(others.get(n, "-")) for n in ("recorder", "load_generator", "kafka", "redis")
        )
        lines.append(
            f"| {s['target']} | {s['rate_tps']} | {s['achieved_tps']} | {s['p50_ms']} "
            f"| {s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['backlog_at_end']} "
            f"| {s['not_returned_after_grace']} | {s['cpu_percent']} | {s['rss_mib']} "
            f"| {neighbours} | {s.get('machine_cpu_percent')} "
            f"| {'yes' if s['sustained'] else 'no'} |"
        )
    p, sc = report["passthrough"], report["scorer"]
    passthrough = any(s["target"] == "passthrough" for s in report["steps"])
    share = f"; {sc['share_of_passthrough']} of the passthrough" if passthrough else ""
    lines += [
        "",
        "Highest sustained rate (p99 <= 50 ms, nothing left behind): "
        + (f"passthrough {p['max_sustained_tps']} tx/s, " if passthrough else "")
        + f"scorer {sc['max_sustained_tps']} tx/s (p99 {sc['p99_ms_at_max']} ms{share}). "
        + (
            f"Scorer p99 at 500 tx/s: {sc['p99_ms_at_500']} ms. "
            if sc["p99_ms_at_500"] is not None
            else "500 tx/s not run. "
        )
        + f"{report['step_seconds']} s per "
        f"step, {report['arrivals']} arrivals, {report['machine']['cpus']} CPUs.",
    ]
    if "aiokafka-passthrough" in report:
        plain = report["aiokafka-passthrough"]
        lines.append(
            f"Plain aiokafka passthrough (no Faust): {plain['max_sustained_tps']} tx/s "
            f"(p99 {plain['p99_ms_at_max']} ms)."
        )
    if report.get("calibration"):
        cost = report["calibration"]["decide_cpu_us_per_tx"]
        lines += [
            "",
            f"Calibration (this machine, this run): `Scorer.decide` on "
            f"{report['calibration']['transactions']} simulated transactions took "
            + ", ".join(f"{us} µs CPU per transaction in batches of {n}" for n, us in cost.items())
            + "; with a challenger in shadow (the active model scoring again): "
            + ", ".join(
                f"{us} µs in batches of {n}"
                for n, us in report["calibration"]["decide_cpu_us_per_tx_with_shadow"].items()
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """p50 and p99 latency against the offered rate, both targets, log scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for target, style in (("passthrough", "--"), ("aiokafka-passthrough", ":"), ("scorer", "-")):
        mine = [s for s in report["steps"] if s["target"] == target and s["p99_ms"] is not None]
        rates = [s["rate_tps"] for s in mine]
        ax.plot(rates, [s["p50_ms"] for s in mine], style, marker="o", label=f"{target} p50")
        ax.plot(rates, [s["p99_ms"] for s in mine], style, marker="s", label=f"{target} p99")
    ax.axhline(50, color="red", lw=1, ls=":", label="SLO p99 50 ms")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="offered rate (transactions/s)",
        ylabel="end-to-end latency (ms)",
        title="Latency against rate (open loop)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
