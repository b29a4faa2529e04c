"""Past one machine (`fraud up --cluster`): three KRaft brokers and a Redis Cluster of three
masters with a replica each, on this machine. Two scorers in one consumer group, pointed at it
by settings alone, decide a replay of the chapter 3 test week's first transactions: each once,
with the features a single node computes (the clean run of the chaos harness is the oracle).
Then the cluster's fault scenarios (`fraud chaos --cluster`): a broker leading most partitions
stopped, a Redis master killed, a scorer replica killed; each audited like the single node's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.common.connections import redis_client
from services.common.decision import decode
from services.common.decision_store import decision_key
from services.common.settings import PROJECT_ROOT, Settings
from services.features import definitions as d
from services.stack.cluster import ClusterStack, client_environment, client_settings
from services.stack.topics import delete_namespace_topics, ensure_topics
from tests.conftest import TrainedModel
from tools.chaos.harness import (
    REFERENCE_REDIS_DB,
    Replay,
    Replica,
    chaos_events,
    copy_active_model,
    read_topic,
    reference_run,
)
from tools.chaos.scenarios import CLUSTER_SCENARIOS, run

pytestmark = pytest.mark.e2e

TRANSACTIONS = 2000
SCENARIO_TRANSACTIONS = 3000
SCENARIO_RATE_TPS = 300.0
COLUMN = {name: j for j, name in enumerate(d.ALL_FEATURES)}
RATE_TPS = 500.0


def _fraud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _stored(client: object, ids: list[str]) -> list[bytes | None]:
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for transaction_id in ids:
        pipe.get(decision_key(transaction_id))
    return list(pipe.execute())


@pytest.fixture(scope="module")
def cluster_up(settings: Settings) -> Iterator[str]:
    """`fraud up --cluster` (its output); stopped at the end unless FRAUD_KEEP_CLUSTER=1."""
    up = _fraud("up", "--cluster")
    assert up.returncode == 0, up.stdout + up.stderr
    yield up.stdout
    if os.environ.get("FRAUD_KEEP_CLUSTER") != "1":
        stopped = ClusterStack(settings).down()
        assert sum(1 for _, was_running in stopped if was_running) == 9


def test_two_scorers_on_the_cluster_decide_each_transaction_once_as_one_node_does(
    cluster_up: str, trained: TrainedModel, settings: Settings, kafka: str, tmp_path: Path
) -> None:
    for key, value in client_environment(settings).items():
        assert f"export {key}={value}" in cluster_up
    status = _fraud("status", "--json")
    listed = {s["name"]: s["ready"] for s in json.loads(status.stdout)}
    assert all(listed[f"kafka-{i}"] for i in (1, 2, 3)), listed
    assert sum(1 for name, ready in listed.items() if name.startswith("redis-27") and ready) == 6

    unique = uuid.uuid4().hex[:8]
    cluster = client_settings(settings)
    cluster = cluster.model_copy(
        update={"topics": cluster.topics.model_copy(update={"prefix": f"cluster-{unique}."})}
    )
    ensure_topics(cluster)
    store = redis_client(cluster.redis, socket_timeout=10)
    store.flushall()  # every master: the card histories of an earlier run would change features
    reference_settings = settings.redis.model_copy(update={"db": REFERENCE_REDIS_DB})
    redis_client(reference_settings).flushdb()
    events = chaos_events(settings, TRANSACTIONS)
    reference = reference_run(reference_settings, events)

    var_dir = tmp_path / "var"
    (var_dir / "log").mkdir(parents=True)
    copy_active_model(trained.settings.models_dir, var_dir / "models")
    env = {
        **client_environment(settings),
        "FRAUD_VAR_DIR": str(var_dir),
        "FRAUD_TOPICS__PREFIX": cluster.topics.prefix,
        "FRAUD_SCORER__APP_ID": f"cluster-{unique}",
        "FRAUD_PROMETHEUS__TARGETS_DIR": str(var_dir / "targets"),
    }
    scorers = [Replica(env, var_dir / "log", i) for i in range(2)]  # scorer and recorder each
    try:
        for scorer in scorers:
            scorer.start()
        for scorer in scorers:
            scorer.wait_owning(cluster.topics.transactions_partitions // 2, timeout_s=180)
        replay = Replay(cluster, events, RATE_TPS).start()
        assert replay.done.wait(120) and replay.failed == 0
        ids = sorted(replay.sent)
        assert len(ids) == TRANSACTIONS
        deadline = time.monotonic() + 120
        while None in (stored := _stored(store, ids)) and time.monotonic() < deadline:
            time.sleep(0.5)
        made = [s.metric_sum("fraud_decisions_total") or 0.0 for s in scorers]
    finally:
        for scorer in scorers:
            scorer.stop()
    assert None not in stored, f"{stored.count(None)} transactions without a decision"
    assert all(m > 0 for m in made), f"decisions per scorer: {made}"  # both took a share

    verdicts: dict[str, set[tuple[str, float | None]]] = {}
    for value in read_topic(cluster, cluster.topics.decisions.name):
        decision = decode(value)
        verdicts.setdefault(decision.transaction_id, set()).add((decision.outcome, decision.score))
    assert set(verdicts) == set(ids)
    assert all(len(v) == 1 for v in verdicts.values())  # none decided twice

    mismatches = 0
    for value in stored:
        decision = decode(value or b"")
        assert not decision.degraded and decision.features is not None
        expected = reference[decision.transaction_id]
        mismatches += any(  # the model's features, a subset of ALL_FEATURES
            not np.isclose(value, expected[COLUMN[name]], rtol=1e-9, atol=1e-9)
            for name, value in decision.features.items()
        )
    assert mismatches == 0
    delete_namespace_topics(cluster)


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_cluster_fault_scenario_loses_nothing_and_decides_nothing_twice(
    scenario: str, cluster_up: str, trained: TrainedModel, settings: Settings, kafka: str
) -> None:
    (result,) = run(
        settings,
        [scenario],
        count=SCENARIO_TRANSACTIONS,
        rate_tps=SCENARIO_RATE_TPS,
        model_source=trained.settings.models_dir,
        log=print,
        cluster=True,
    )
    report = result.as_dict()
    print(report)
    assert result.audit.sent == result.audit.decided == SCENARIO_TRANSACTIONS, report
    assert result.audit.lost == 0 and result.audit.duplicated == 0, report
    assert result.audit.state_equal and result.audit.feature_mismatches == 0, report
    assert all(result.checks.values()) and result.checks, report
    assert result.passed
