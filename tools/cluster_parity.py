"""The main job's week on one node and on the cluster, decision by decision (issue #16).

``python -m tools.cluster_parity [--days N] [--rate R] [--scorers K] [--json]``

Runs the main job's replay (the chapter 3 test week from 2018-08-08, transactions and their
labels, as ``fraud demo`` sends them with ``fraud produce``'s producer) twice, each in a private
namespace of the chaos harness: once on the single-node stack with one scorer, once on the
cluster stack (``fraud up --cluster``) with ``K`` scorers in one group. Each run starts from the
same backfilled feature state. Then it compares the stored decisions transaction by
transaction: outcome, score and the features the model saw must be equal. Needs both stacks
running and an active model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.common.decision import Decision
from services.common.settings import Settings
from tools.chaos.harness import Namespace
from tools.demo.job import DEFAULT_START, fetch_decisions, wait_for_store


def run_week(
    settings: Settings,
    root: Path,
    name: str,
    cluster: bool,
    scorers: int,
    days: int,
    rate_tps: float,
) -> tuple[dict[str, Decision | None], dict[str, Any]]:
    """One replay of the week in its own namespace; the stored decisions by transaction id
    and what the run took."""
    from services.common.handbook import load_transactions
    from services.producer.replay import send_all
    from services.producer.sources import read_file, replay_events
    from services.scorer.backfill import backfill

    start, end = DEFAULT_START, DEFAULT_START + dt.timedelta(days=days)
    ns = Namespace(settings, root, name, settings.models_dir, cluster=cluster)
    ns.prepare()
    try:
        began = time.monotonic()
        backfill(ns.redis(), load_transactions(settings.data_dir, None, start), start)
        processes = [ns.scorer() for _ in range(scorers)]
        for process in processes:
            process.start()
        partitions = ns.settings.topics.transactions.partitions
        for process in processes:
            process.wait_owning(partitions // scorers if scorers > 1 else partitions, 180)
        frame = read_file(settings.data_dir / "transactions.parquet")
        week = frame[
            (frame["event_time"] >= pd.Timestamp(start, tz="UTC"))
            & (frame["event_time"] < pd.Timestamp(end, tz="UTC"))
        ]
        ids = week["transaction_id"].astype(str).tolist()
        stats = send_all(ns.settings, replay_events(frame, start, end), rate_tps)
        stored = wait_for_store(ns.redis(), ids, timeout_s=300)
        decisions = dict(zip(ids, fetch_decisions(ns.redis(), ids), strict=True))
        shares = [p.metric_sum("fraud_decisions_total") for p in processes]
        return decisions, {
            "transactions": len(ids),
            "sent_events": stats.sent,
            "stored": stored,
            "scorers": scorers,
            "seconds": round(time.monotonic() - began, 1),
            "scorer_alive": [p.alive() for p in processes],
            "decisions_per_scorer": shares,
        }
    finally:
        ns.close()


def compare(one: dict[str, Decision | None], other: dict[str, Decision | None]) -> dict[str, int]:
    """Counts of transactions missing on either side and of differing outcome, score or
    features (features equal within 1e-9, relative)."""
    out = {"missing": 0, "outcome": 0, "score": 0, "features": 0, "degraded": 0}
    for tx, a in one.items():
        b = other.get(tx)
        if a is None or b is None:
            out["missing"] += 1
            continue
        out["degraded"] += int(a.degraded or b.degraded)
        out["outcome"] += int(a.outcome != b.outcome)
        out["score"] += int(a.score != b.score)
        fa, fb = a.features or {}, b.features or {}
        out["features"] += int(
            fa.keys() != fb.keys()
            or any(not np.isclose(fa[k], fb[k], rtol=1e-9, atol=1e-9) for k in fa)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rate", type=float, default=500.0, help="transactions per second")
    parser.add_argument("--scorers", type=int, default=2, help="scorers on the cluster")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    root = settings.var_dir / "parity" / time.strftime("%Y%m%dT%H%M%S")
    single, single_run = run_week(settings, root, "one-node", False, 1, args.days, args.rate)
    spread, cluster_run = run_week(
        settings, root, "cluster", True, args.scorers, args.days, args.rate
    )
    report = {
        "one_node": single_run,
        "cluster": cluster_run,
        "differences": compare(single, spread),
    }
    print(json.dumps(report, indent=2) if args.json else report)
    differences = report["differences"]
    return 0 if not any(differences.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
