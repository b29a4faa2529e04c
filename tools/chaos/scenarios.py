"""The fault scenarios of ``fraud chaos`` (issue #8): each breaks one thing during a replay.

- ``scorer-kill``: SIGKILL the scorer and its recorder (a node's crash) at random moments,
  restarting them each time;
- ``broker-restart``: stop the Kafka broker mid-replay and start it again;
- ``redis-outage``: stop Redis for 30 s mid-replay (the scorer decides in degraded mode);
- ``replica-kill``: two replicas (scorer and recorder each) in their consumer groups, SIGKILL
  one (the terminals' writer moves to the other's recorder when it was the writer);
- ``bad-model``: promote a model file that does not load (through the API, then behind its
  back): the old model stays active and the API says why;
- ``producer-outage``: ``fraud produce`` replays while the broker is away for longer than the
  producer waits (``--max-outage-s``): it must stop without a traceback, exit 4 and print
  where to resume; rerun from there, nothing is lost or decided twice. The scorer's own wait
  for the broker is as short, so decisions in flight as the broker left (when the scorer had
  not caught up) fail too: it must go back to what was delivered and decide the rest again.

On the cluster stack (``fraud chaos --cluster``, issue #16):

- ``broker-leader-stop``: stop the broker that leads most of the namespace's partitions in the
  middle of the replay, start it again :data:`CLUSTER_BROKER_DOWN_S` later (the topics keep
  two in-sync replicas, so producers and scorers carry on with the other two);
- ``redis-master-kill``: SIGKILL a Redis master; its replica takes over once the cluster's
  node timeout (5 s) has passed, the scorers decide in degraded mode until their cluster
  client follows the new slot map, then catch up; the killed node comes back as a replica;
- ``replica-kill``: as on one node, on the cluster.

Scenarios restart the local stack's broker and Redis (or the cluster's nodes): run them on a
development stack, not beside a production one.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.common.settings import PROJECT_ROOT, Settings
from services.producer.sources import Event
from services.stack.process import free_port
from tools.chaos.harness import (
    Audit,
    FraudProcess,
    Namespace,
    Replay,
    audit,
    chaos_events,
    clean_run,
)

REDIS_OUTAGE_S = 30.0
BROKER_DOWN_S = 5.0
PRODUCER_WAITS_S = 10.0
"""``fraud produce --max-outage-s`` in the producer-outage scenario, and the scorer's
``FRAUD_SCORER__BROKER_WAIT_S`` there; the broker stays away :data:`PRODUCER_OUTAGE_S`,
longer, so both give up on it: the producer exits, the scorer goes back to what was
delivered."""
PRODUCER_OUTAGE_S = 25.0
CLUSTER_BROKER_DOWN_S = 15.0
REDIS_NODE_DOWN_S = 20.0
"""How long a killed Redis Cluster master stays away (its replica is promoted meanwhile)."""
FAILOVER_WITHIN_S = 30.0


@dataclass
class ScenarioResult:
    """One scenario's audit, what was done to the system, and its verdict."""

    scenario: str
    audit: Audit
    faults: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    seed: int = 0
    """The run's seed: ``fraud chaos --seed`` repeats its fault moments."""

    @property
    def passed(self) -> bool:
        a = self.audit
        clean = a.lost == 0 and a.duplicated == 0 and a.feature_mismatches == 0
        return clean and a.state_equal and a.sent > 0 and all(self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        a = asdict(self.audit)
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            **{k: a[k] for k in ("sent", "decided", "duplicated", "lost")},
            **{k: v for k, v in a.items() if k not in ("sent", "decided", "duplicated", "lost")},
            "faults": self.faults,
            "checks": self.checks,
            "seconds": round(self.seconds, 1),
            "seed": self.seed,
        }


@dataclass
class Context:
    """What every scenario gets: the stack's settings, the events, pacing and a seed."""

    settings: Settings
    root: Path
    model_source: Path
    events: list[Event]
    rate_tps: float
    rng: random.Random
    log: Callable[[str], None]
    cluster: bool = False

    @property
    def replay_s(self) -> float:
        return len(self.events) / self.rate_tps

    def namespace(self, name: str) -> Namespace:
        ns = Namespace(self.settings, self.root, name, self.model_source, cluster=self.cluster)
        ns.prepare()
        return ns

    def finish(self, ns: Namespace, replay: Replay) -> Audit:
        replay.wait(self.replay_s + 300)
        self.log(f"{ns.name}: replay done ({len(replay.sent)} acknowledged); auditing")
        reference, clean = clean_run(ns.reference, self.events)
        timeout_s = 120 + len(self.events) / 500
        return audit(ns, replay, reference, timeout_s=timeout_s, clean_state=clean)


def _kill_times(ctx: Context, kills: int) -> list[float]:
    """Random moments between 10 % and 85 % of the replay (seconds from its start), at least
    4 s apart, or evenly spread as far apart as the replay allows when it is short."""
    first, last = 0.1 * ctx.replay_s, 0.85 * ctx.replay_s
    gap = min(4.0, (last - first) / kills)  # kills * gap <= last - first: always satisfiable
    while True:
        times = sorted(ctx.rng.uniform(first, last) for _ in range(kills))
        if all(b - a >= gap for a, b in itertools.pairwise(times)):
            return times


def _sleep_until(began: float, offset: float) -> None:
    time.sleep(max(began + offset - time.monotonic(), 0.0))


def _scorer_and_replay(ctx: Context, ns: Namespace) -> tuple[FraudProcess, float, Replay]:
    """Start one scorer, wait until it owns every partition, then start the replay.

    Returns:
        The scorer, the replay's start (``time.monotonic()``) and the replay.
    """
    scorer = ns.scorer()
    scorer.start()
    scorer.wait_owning(ns.settings.topics.transactions.partitions)
    return scorer, time.monotonic(), Replay(ns.settings, ctx.events, ctx.rate_tps).start()


def scorer_kill(ctx: Context, kills: int = 3) -> ScenarioResult:
    ns = ctx.namespace("scorer-kill")
    result = ScenarioResult("scorer-kill", Audit())
    try:
        scorer, began, replay = _scorer_and_replay(ctx, ns)
        for offset in _kill_times(ctx, kills):
            # a kill hits a scorer at work: not before the last restart owns its partitions
            _sleep_until(began, max(offset, time.monotonic() - began + ctx.rng.uniform(0.5, 2)))
            scorer.kill()
            result.faults.append(
                f"SIGKILL scorer and its recorder at {time.monotonic() - began:.1f} s"
            )
            scorer = ns.scorer()
            scorer.start()
            scorer.wait_owning(ns.settings.topics.transactions.partitions)
        result.audit = ctx.finish(ns, replay)
        result.checks["producer_lost_nothing"] = replay.failed == 0
    finally:
        ns.close()
    return result


def broker_restart(ctx: Context) -> ScenarioResult:
    from services.stack.kafka_broker import KafkaBroker

    ns = ctx.namespace("broker-restart")
    result = ScenarioResult("broker-restart", Audit())
    broker = KafkaBroker(ctx.settings).process()
    try:
        scorer, began, replay = _scorer_and_replay(ctx, ns)
        _sleep_until(began, ctx.rng.uniform(0.3, 0.5) * ctx.replay_s)
        result.faults.append(f"broker {_broker_away(ctx, broker, began, BROKER_DOWN_S)}")
        _finish_survived(ctx, ns, replay, scorer, result)
    finally:
        broker.start(ctx.settings.service_timeout_s)  # whatever happened, leave it running
        ns.close()
    return result


def _broker_away(ctx: Context, broker: Any, began: float, down_s: float) -> str:
    """Stop ``broker`` (a controlled shutdown), keep it away ``down_s``, start it again;
    returns when each happened (seconds since ``began``), for the report.

    Raises:
        RuntimeError: the broker is not one `fraud up` started (it cannot be stopped here).
    """
    at = time.monotonic() - began
    if not broker.stop():
        raise RuntimeError(f"{broker.name} is not one `fraud up` started; cannot restart it")
    stopped = time.monotonic() - began
    time.sleep(down_s)
    broker.start(ctx.settings.service_timeout_s)
    return (
        f"told to stop at {at:.1f} s, gone at {stopped:.1f} s, down {down_s:.0f} s, serving"
        f" again at {time.monotonic() - began:.1f} s"
    )


def _finish_survived(
    ctx: Context, ns: Namespace, replay: Replay, scorer: FraudProcess, result: ScenarioResult
) -> None:
    """Audit the replay, and check that the producer lost nothing and the scorer lived."""
    result.audit = ctx.finish(ns, replay)
    result.checks["producer_lost_nothing"] = replay.failed == 0
    result.checks["scorer_survived"] = scorer.alive()


def redis_outage(ctx: Context, outage_s: float = REDIS_OUTAGE_S) -> ScenarioResult:
    from services.stack.redis_server import redis_process

    ns = ctx.namespace("redis-outage")
    result = ScenarioResult("redis-outage", Audit())
    server = redis_process(ctx.settings, install=False)
    try:
        scorer, began, replay = _scorer_and_replay(ctx, ns)
        _sleep_until(began, ctx.rng.uniform(0.1, 0.2) * ctx.replay_s)
        at = time.monotonic() - began
        if not server.stop():
            raise RuntimeError("Redis is not one `fraud up` started; cannot stop it")
        time.sleep(outage_s / 2)
        flagged = scorer.metric("fraud_degraded_mode")
        time.sleep(outage_s / 2)
        server.start(ctx.settings.service_timeout_s)
        result.faults.append(
            f"Redis stopped at {at:.1f} s for {time.monotonic() - began - at:.1f} s"
        )
        replay.wait(ctx.replay_s + 300)
        result.checks["recovered"] = _recovered(scorer)
        result.faults.append(f"scorer recovered {time.monotonic() - began:.1f} s into the run")
        result.audit = ctx.finish(ns, replay)
        result.checks["degraded_mode_flagged"] = flagged == 1.0
        result.checks["degraded_decisions_counted"] = (
            (scorer.metric("fraud_degraded_decisions_total") or 0) >= result.audit.degraded > 0
        )
        result.checks["scorer_survived"] = scorer.alive()
        result.checks["producer_lost_nothing"] = replay.failed == 0
    finally:
        server.start(ctx.settings.service_timeout_s)
        ns.close()
    return result


def replica_kill(ctx: Context) -> ScenarioResult:
    ns = ctx.namespace("replica-kill")
    result = ScenarioResult("replica-kill", Audit())
    partitions = ns.settings.topics.transactions.partitions
    try:
        first, second = ns.scorer(), ns.scorer()
        first.start()
        first.wait_owning(partitions)
        second.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (first.owned() > 0 and second.owned() > 0):
            time.sleep(0.25)
        shared = (first.owned(), second.owned())
        result.checks["partitions_shared"] = sum(shared) == partitions and min(shared) > 0
        began = time.monotonic()
        replay = Replay(ns.settings, ctx.events, ctx.rate_tps).start()
        victim, survivor = (first, second) if ctx.rng.random() < 0.5 else (second, first)
        _sleep_until(began, ctx.rng.uniform(0.2, 0.6) * ctx.replay_s)
        held = victim.owned()
        victim.kill()
        result.faults.append(
            f"SIGKILL one of two replicas, scorer and recorder (it owned {held} of "
            f"{partitions} partitions) at {time.monotonic() - began:.1f} s"
        )
        result.audit = ctx.finish(ns, replay)
        result.checks["survivor_owns_all"] = survivor.owned() == partitions
        result.checks["producer_lost_nothing"] = replay.failed == 0
    finally:
        ns.close()
    return result


def bad_model(ctx: Context) -> ScenarioResult:
    """A damaged version is refused by the API; one activated behind the API's back is not
    loaded by the scorer, which keeps deciding with the old model while the API says why."""
    import requests

    from models.registry import BOOSTER_FILE, ModelRegistry

    ns = ctx.namespace("bad-model")
    result = ScenarioResult("bad-model", Audit())
    registry = ModelRegistry(ns.settings.models_dir)
    good = registry.active()
    loaded = registry.load(good or "")
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("version", "created_at")}
    broken = registry.register(loaded.booster, meta)
    (registry.root / broken / BOOSTER_FILE).write_bytes(b"{not a booster" + bytes(64))
    key = f"fd_{secrets.token_hex(6)}_{secrets.token_hex(24)}"
    port = free_port()
    api = FraudProcess(
        {**ns.env, "FRAUD_API__PORT": str(port), "FRAUD_API__BOOTSTRAP_ADMIN_KEY": key},
        ns.var_dir / "log" / "api.log",
        command="api",
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": key}
    try:
        scorer = ns.scorer()
        scorer.start()
        scorer.wait_owning(ns.settings.topics.transactions.partitions)
        api.start()
        _wait_http(f"{url}/readyz")
        began = time.monotonic()
        replay = Replay(ns.settings, ctx.events, ctx.rate_tps).start()
        _sleep_until(began, 0.25 * ctx.replay_s)
        refused = requests.post(f"{url}/v1/models/{broken}/promote", headers=headers, timeout=10)
        result.faults.append(f"API promote of damaged {broken}: HTTP {refused.status_code}")
        result.checks["api_refuses_damaged_model"] = (
            refused.status_code == 409
            and refused.headers.get("content-type", "").startswith("application/problem+json")
            and registry.active() == good
        )
        _sleep_until(began, 0.5 * ctx.replay_s)
        _activate_behind_api(registry, broken)
        result.faults.append(f"{broken} activated in registry.json directly")
        said = _wait_json(
            f"{url}/v1/models/active", headers, lambda body: bool(body.get("load_error"))
        )
        result.checks["api_says_why"] = bool(said and said["version"] == broken)
        _sleep_until(began, 0.75 * ctx.replay_s)
        back = requests.post(f"{url}/v1/models/{good}/promote", headers=headers, timeout=10)
        result.faults.append(f"API promote of {good} again: HTTP {back.status_code}")
        cleared = _wait_json(
            f"{url}/v1/models/active", headers, lambda body: body.get("load_error") is None
        )
        result.checks["error_cleared_after_fix"] = bool(cleared and cleared["version"] == good)
        result.audit = ctx.finish(ns, replay)
        models = _stored_model_versions(ns, sorted(replay.sent))
        result.checks["old_model_kept_deciding"] = models == {good}
        result.checks["nothing_degraded"] = result.audit.degraded == 0
    finally:
        api.stop()
        ns.close()
    secret = key.split("_")[2].encode()
    result.checks["no_key_in_logs"] = not any(secret in log.read_bytes() for log in ns.logs())
    return result


def _activate_behind_api(registry: Any, version: str) -> None:
    """What a deploy script writing the registry's pointer file would do."""
    import json

    path = registry.root / "registry.json"
    state = json.loads(path.read_text())
    state["history"].append({"version": version, "by": "chaos", "at": time.time()})
    state["active"] = version
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")


def _wait_json(
    url: str, headers: dict[str, str], accept: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    import requests

    body: dict[str, Any] | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = requests.get(url, headers=headers, timeout=5).json()
        if accept(body):
            return body
        time.sleep(0.25)
    return None


def _stored_model_versions(ns: Namespace, ids: list[str]) -> set[str | None]:
    from tools.demo.job import fetch_decisions

    return {rec.model_version for rec in fetch_decisions(ns.redis(), ids) if rec is not None}


def _produce(ns: Namespace, count: int, rate_tps: float, *extra: str) -> subprocess.Popen[str]:
    """``fraud produce`` of the chaos events (the test week's first ``count`` transactions, no
    labels) into the namespace, as a user runs it."""
    argv = [sys.executable, "-m", "services.cli", "produce", "--from", "2018-08-08"]
    argv += ["--count", str(count), "--rate", str(rate_tps), "--no-labels", "--json", *extra]
    return subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env={**os.environ, **ns.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Produced:
    """What the audit needs of a replay: the transaction ids acknowledged (all of them once
    the producer's rerun succeeded)."""

    def __init__(self, ids: set[str]) -> None:
        self.sent, self.failed = ids, 0

    def wait(self, timeout_s: float) -> None:
        pass


def producer_outage(ctx: Context) -> ScenarioResult:
    from services.stack.kafka_broker import KafkaBroker

    ns = ctx.namespace("producer-outage")
    result = ScenarioResult("producer-outage", Audit())
    broker = KafkaBroker(ctx.settings).process()
    count = len(ctx.events)
    try:
        ns.env["FRAUD_SCORER__BROKER_WAIT_S"] = str(PRODUCER_WAITS_S)
        scorer = ns.scorer()
        scorer.start()
        scorer.wait_owning(ns.settings.topics.transactions.partitions)
        began = time.monotonic()
        first = _produce(ns, count, ctx.rate_tps, "--max-outage-s", str(PRODUCER_WAITS_S))
        # the outage must hit a producer at work: wait for its first decisions (reading the
        # handbook file takes it seconds), then a random moment of the replay's first half
        deadline = time.monotonic() + 180
        while (scorer.metric("fraud_e2e_latency_seconds_count") or 0) < 100:
            if time.monotonic() > deadline or first.poll() is not None:
                raise RuntimeError("the producer sent nothing within 180 s")
            time.sleep(0.2)
        sending = time.monotonic()
        _sleep_until(sending, ctx.rng.uniform(0.1, 0.4) * ctx.replay_s)
        if not broker.stop():
            raise RuntimeError("the Kafka broker is not one `fraud up` started; cannot stop it")
        stopped = time.monotonic() - began
        time.sleep(PRODUCER_OUTAGE_S)
        broker.start(ctx.settings.service_timeout_s)
        out, err = first.communicate(timeout=ctx.replay_s + 300)
        result.faults.append(
            f"broker gone at {stopped:.1f} s for {PRODUCER_OUTAGE_S:.0f} s; the producer waits "
            f"{PRODUCER_WAITS_S:.0f} s and exited {first.returncode}: {err.strip()[-300:]}"
        )
        result.checks["producer_exited_4"] = first.returncode == 4
        result.checks["no_traceback"] = "Traceback" not in err
        resume = json.loads(out.strip().splitlines()[-1]).get("resume_at") if out.strip() else None
        result.checks["resume_point_printed"] = (
            resume is not None and f"--skip-events {resume}" in err
        )
        if resume is not None:
            rerun = _produce(ns, count, 0.0, "--skip-events", str(resume))
            _, rerun_err = rerun.communicate(timeout=600)
            result.checks["rerun_completed"] = rerun.returncode == 0
            result.faults.append(
                f"rerun from event {resume}: exit {rerun.returncode} {rerun_err.strip()[-200:]}"
            )
        ids = {str(orjson.loads(e.value)["transaction_id"]) for e in ctx.events}
        result.audit = ctx.finish(ns, _Produced(ids))  # type: ignore[arg-type]
        result.checks["scorer_survived"] = scorer.alive()
        # decisions in flight as the broker left fail after the scorer's wait: it goes back
        # and decides them again. Not a check: whether any was in flight depends on timing
        # (a scorer that had caught up has none: fresh-clone CI, 2026-12-03)
        rewinds = scorer.metric("fraud_scorer_delivery_rewinds_total") or 0
        result.faults.append(
            f"the scorer went back to the delivered offsets: {rewinds:.0f} time(s)"
        )
    finally:
        broker.start(ctx.settings.service_timeout_s)  # whatever happened, leave it running
        ns.close()
    return result


def _partition_leaders(settings: Settings) -> dict[int, int]:
    """Partitions led by each broker (node id) across the namespace's topics."""
    from kafka import KafkaAdminClient

    from services.common.connections import kafka_python_kwargs

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka))
    try:
        prefix = settings.topics.prefix
        topics = [t for t in admin.list_topics() if t.startswith(prefix)]
        led: dict[int, int] = {}
        for topic in admin.describe_topics(topics):
            for partition in topic["partitions"]:
                led[partition["leader_id"]] = led.get(partition["leader_id"], 0) + 1
        return led
    finally:
        admin.close()


def broker_leader_stop(ctx: Context) -> ScenarioResult:
    from services.stack.cluster import ClusterStack

    ns = ctx.namespace("broker-leader-stop")
    result = ScenarioResult("broker-leader-stop", Audit())
    brokers = [b.process() for b in ClusterStack(ctx.settings).brokers]
    try:
        scorer, began, replay = _scorer_and_replay(ctx, ns)
        _sleep_until(began, ctx.rng.uniform(0.2, 0.4) * ctx.replay_s)
        led = _partition_leaders(ns.settings)
        node = max(sorted(led), key=lambda n: led[n])
        broker = brokers[node - 1]
        away = _broker_away(ctx, broker, began, CLUSTER_BROKER_DOWN_S)
        result.faults.append(
            f"{broker.name} (leader of {led[node]} of {sum(led.values())} partitions) {away}"
        )
        _finish_survived(ctx, ns, replay, scorer, result)
    finally:
        for broker in brokers:  # whatever happened, leave the cluster running
            broker.start(ctx.settings.service_timeout_s)
        ns.close()
    return result


def _cluster_nodes(settings: Settings, ports: list[int]) -> dict[int, tuple[str, int]]:
    """Each node's role and slot count as the first node of ``ports`` that answers sees them:
    ``{port: ("master" | "slave", slots)}``; a node it reports as failed is left out."""
    import redis

    for asked in ports:
        client = redis.Redis(host=settings.redis.host, port=asked, socket_timeout=2)
        try:
            listing = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            continue
        finally:
            client.close()
        nodes = {}
        for address, node in listing.items():  # redis-py parses CLUSTER NODES
            flags = str(node["flags"]).split(",")
            if "fail" in flags or "fail?" in flags:
                continue
            slots = sum(int(r[-1]) - int(r[0]) + 1 for r in node["slots"])
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            nodes[port] = ("master" if "master" in flags else "slave", slots)
        return nodes
    raise RuntimeError(f"no Redis Cluster node answers on ports {ports}")


def redis_master_kill(ctx: Context) -> ScenarioResult:
    from services.stack.cluster import ClusterStack, redis_ports

    ns = ctx.namespace("redis-master-kill")
    result = ScenarioResult("redis-master-kill", Audit())
    stack = ClusterStack(ctx.settings)
    ports = redis_ports(ctx.settings)
    try:
        scorer, began, replay = _scorer_and_replay(ctx, ns)
        _sleep_until(began, ctx.rng.uniform(0.2, 0.4) * ctx.replay_s)
        nodes = _cluster_nodes(ctx.settings, ports)
        masters = sorted(p for p, (role, slots) in nodes.items() if role == "master" and slots)
        victim = ctx.rng.choice(masters)
        process = stack.redis_process(victim)
        pid = process.pid()
        if pid is None:
            raise RuntimeError(f"{process.name} is not one `fraud up --cluster` started")
        os.kill(pid, 9)
        killed = time.monotonic() - began
        survivors = [p for p in ports if p != victim]
        promoted = None
        deadline = time.monotonic() + FAILOVER_WITHIN_S
        while promoted is None and time.monotonic() < deadline:
            time.sleep(0.25)
            now = _cluster_nodes(ctx.settings, survivors)
            fresh = [p for p, (role, slots) in now.items() if role == "master" and slots]
            if len(fresh) == len(masters) and victim not in fresh:
                promoted = time.monotonic() - began
        result.checks["replica_promoted"] = promoted is not None
        _sleep_until(began, killed + REDIS_NODE_DOWN_S)
        process.start(ctx.settings.service_timeout_s)
        result.faults.append(
            f"SIGKILL Redis master {victim} at {killed:.1f} s; "
            + (f"its replica master at {promoted:.1f} s; " if promoted else "no failover; ")
            + f"{victim} back (a replica now) at {time.monotonic() - began:.1f} s"
        )
        replay.wait(ctx.replay_s + 300)
        result.checks["recovered"] = _recovered(scorer)
        result.audit = ctx.finish(ns, replay)
        result.checks["killed_node_rejoined"] = victim in _cluster_nodes(ctx.settings, ports)
        result.checks["producer_lost_nothing"] = replay.failed == 0
        result.checks["scorer_survived"] = scorer.alive()
    finally:
        for node in stack.processes():
            node.start(ctx.settings.service_timeout_s)
        ns.close()
    return result


def _recovered(scorer: FraudProcess, timeout_s: float = 120.0) -> bool:
    """Wait until the scorer has left degraded mode and written its backlog to the state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if scorer.metric("fraud_degraded_mode") == 0.0 and (
            scorer.metric("fraud_feature_state_backlog") == 0.0
        ):
            return True
        time.sleep(0.5)
    return False


SCENARIOS: dict[str, Callable[[Context], ScenarioResult]] = {
    "scorer-kill": scorer_kill,
    "broker-restart": broker_restart,
    "redis-outage": redis_outage,
    "replica-kill": replica_kill,
    "bad-model": bad_model,
    "producer-outage": producer_outage,
}
CLUSTER_SCENARIOS: dict[str, Callable[[Context], ScenarioResult]] = {
    "broker-leader-stop": broker_leader_stop,
    "redis-master-kill": redis_master_kill,
    "replica-kill": replica_kill,
}
"""The scenarios of ``fraud chaos --cluster``, on the stack of ``fraud up --cluster``."""


def run(
    settings: Settings,
    names: list[str],
    count: int = 50_000,
    rate_tps: float = 1000.0,
    seed: int | None = None,
    model_source: Path | None = None,
    log: Callable[[str], None] = print,
    cluster: bool = False,
) -> list[ScenarioResult]:
    """Run the named scenarios one after another on the local stack (with ``cluster``: on the
    cluster stack, :data:`CLUSTER_SCENARIOS`; the single node's Redis holds the clean run).

    Args:
        count: transactions replayed per scenario (the chapter 3 test week's first ones).
        rate_tps: replay rate, transactions per second.
        seed: for the random fault moments (default: drawn, and logged).
        model_source: registry whose active model the scorers use (default: the project's).

    Raises:
        KeyError: an unknown scenario name.
        RegistryError: no active model.
    """
    known = CLUSTER_SCENARIOS if cluster else SCENARIOS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown scenarios {unknown}; choose from {sorted(known)}")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    log(f"chaos seed {seed}: {len(names)} scenarios, {count} transactions each at {rate_tps}/s")
    ctx = Context(
        settings=settings,
        root=settings.var_dir / "chaos" / time.strftime("%Y%m%dT%H%M%S"),
        model_source=model_source or settings.models_dir,
        events=chaos_events(settings, count),
        rate_tps=rate_tps,
        rng=random.Random(seed),
        log=log,
        cluster=cluster,
    )
    results = []
    for name in names:
        began = time.monotonic()
        result = known[name](ctx)
        result.seconds, result.seed = time.monotonic() - began, seed
        log(f"{name}: {'passed' if result.passed else 'FAILED'} {result.as_dict()}")
        results.append(result)
    return results


def markdown(results: list[ScenarioResult]) -> str:
    """A table of the scenarios' counts and verdicts, then what was done in each."""
    lines = [
        "| scenario | sent | decided | duplicated | lost | redelivered | degraded "
        "| longest wait | degraded for | feature state | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a = r.audit
        state = "equal" if a.state_equal and not a.feature_mismatches else "DIFFERS"
        lines.append(
            f"| {r.scenario} | {a.sent} | {a.decided} | {a.duplicated} | {a.lost} "
            f"| {a.redelivered} | {a.degraded} | {a.longest_wait_s:.1f} s | {a.degraded_s:.1f} s"
            f" | {state} "
            f"| {'passed' if r.passed else 'FAILED'} ({r.seconds:.0f} s) |"
        )
    lines.append("")
    if results:
        lines.append(f"Seed {results[0].seed} (`fraud chaos --seed {results[0].seed}` repeats it).")
    for r in results:
        failed = [name for name, ok in r.checks.items() if not ok]
        lines.append(
            f"- {r.scenario}: {'; '.join(r.faults)}"
            + (f". Failed checks: {', '.join(failed)}" if failed else "")
        )
    return "\n".join(lines) + "\n"
