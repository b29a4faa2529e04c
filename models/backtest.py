"""``fraud backtest``: what a model and a policy would have decided on history.

History runs through the scorer's own code: the features of
:func:`services.features.batch.compute_features` (the same window functions as the scorer's
online state, with every label received as the handbook assumes; bit-identical to the online
features on the chapter 3 test week, see ``tests/e2e/test_main_job.py``), then
:class:`services.scorer.scoring.Scorer` with the version's compiled trees
(:class:`services.scorer.model.ActiveModel`) and :func:`services.common.policy.decide`. For
the model and policy the live scorer used, each decision's score and outcome equal the live
one.

The report gives per day (UTC, by event time): the outcomes, the review load, the frauds and
how many of them (and how much) were declined, sent to review or approved, the average
precision and the card precision@100 (the handbook's chapter 4 definitions: a card detected
on a day is left out of the next days' rankings).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from models.metrics import card_precision_at_k
from models.registry import ModelRegistry
from services.common.errors import plain_message
from services.common.events import (
    InvalidEvent,
    Transaction,
    id_problem,
    mask_card_numbers,
    parse_transaction,
    unique_keys,
)
from services.common.handbook import DataError, load_transactions
from services.common.policy import Policy
from services.common.settings import Settings
from services.features import definitions as d
from services.features.batch import compute_features
from services.features.windows import FloatArray
from services.producer.sources import read_file, replay_events
from services.scorer.model import ActiveModel
from services.scorer.scoring import Scorer

HISTORY_DAYS = 45
"""Days of history read before ``start`` (the windows need 37: 30 days and the label delay)."""
BATCH = 5000


@dataclass
class _Found:
    values: FloatArray
    reused: list[bool]


class HistoryFeatures:
    """A :class:`services.scorer.ports.FeatureSource` over features computed beforehand."""

    def __init__(self, rows: dict[str, np.ndarray]) -> None:
        self._rows = rows

    async def features(self, batch: Sequence[Transaction]) -> _Found:
        values = np.stack([self._rows[tx.transaction_id] for tx in batch])
        return _Found(values, [False] * len(batch))

    async def flush(self) -> None:
        return None

    def take_unwritten(self) -> list[Transaction]:
        return []


def load_policy(path: Path | None) -> Policy:
    """A policy from a JSON file (the body of ``PUT /v1/policy`` or what ``GET /v1/policy``
    returns); without a file, version 0: the model's own thresholds, empty lists.

    Raises:
        ValueError: the file is not JSON, not an object (or names a key twice), or not a
            valid policy: thresholds
            out of order or outside 0..1, or a list id that breaks the transaction
            contract's rules (:func:`services.common.events.id_problem`; card numbers masked).
        OSError: the file cannot be read.
    """
    if path is None:
        return Policy()
    try:  # a name given twice is refused, as PUT /v1/policy refuses it
        data = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except InvalidEvent as error:
        raise ValueError(f"{error.reason.split(':', 1)[1]} appears more than once") from None
    if not isinstance(data, dict):
        raise ValueError(f"a policy is a JSON object, not {type(data).__name__}")
    for name in ("allow_customers", "block_customers", "allow_terminals", "block_terminals"):
        ids = data.get(name, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{name} must be a list of ids (strings)")
        for i in ids:
            if (problem := id_problem(i)) is not None:
                raise ValueError(f"{name}: {mask_card_numbers(i)!r} {problem}")
        data[name] = frozenset(ids)
    try:
        return Policy(**data)
    except ValidationError as error:
        where = [".".join(map(str, e["loc"])) for e in error.errors()]
        said = [plain_message(e) for e in error.errors()]
        raise ValueError(
            "; ".join(f"{w}: {m}" if w else m for w, m in zip(where, said, strict=True))
        ) from None


def decide_history(
    settings: Settings,
    version: str,
    policy: Policy,
    start: dt.date,
    end: dt.date,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every transaction of ``start <= day < end`` decided by ``version`` under ``policy``.

    Args:
        history: the handbook's transactions to use (default: read from the data folder),
            in stream order, from at least :data:`HISTORY_DAYS` days before ``start``.

    Returns:
        One row per transaction, in event-time order: ``transaction_id``, ``day``,
        ``customer_id``, ``terminal_id``, ``amount``, ``is_fraud``, ``score``, ``outcome``.

    Raises:
        models.registry.RegistryError: the version does not exist or does not load.
        services.common.handbook.DataError: the data folder lacks the handbook's files, or
            they hold no transaction in the period.
    """
    model = ActiveModel(ModelRegistry(settings.models_dir))
    model.use(version)
    stop = end + dt.timedelta(days=1)
    if history is None:
        history = load_transactions(
            settings.data_dir, start - dt.timedelta(days=HISTORY_DAYS), stop
        )
    values = compute_features(history)[list(d.ALL_FEATURES)].to_numpy(dtype=np.float64)
    rows = dict(zip(history["TRANSACTION_ID"].astype(str), values, strict=True))
    frauds = dict(zip(history["TRANSACTION_ID"].astype(str), history["TX_FRAUD"], strict=True))
    frame = read_file(settings.data_dir / "transactions.parquet")
    txs = [
        parse_transaction(e.value)
        for e in replay_events(frame, start, end)
        if e.topic == "transactions"
    ]
    if not txs:
        last = end - dt.timedelta(days=1)
        days = f"on {start}" if last == start else f"from {start} to {last}"
        raise DataError(f"the data holds no transaction {days}")
    scorer = Scorer(HistoryFeatures(rows), model, policy)

    async def run() -> list[Any]:
        decided: list[Any] = []
        for at in range(0, len(txs), BATCH):
            decided += await scorer.decide(txs[at : at + BATCH])
        return decided

    decided = asyncio.run(run())
    return pd.DataFrame(
        {
            "transaction_id": [x.transaction_id for x in decided],
            "day": [x.event_time[:10] for x in decided],
            "customer_id": [x.customer_id for x in decided],
            "terminal_id": [x.terminal_id for x in decided],
            "amount": [x.amount for x in decided],
            "is_fraud": [int(frauds[x.transaction_id]) for x in decided],
            "score": [x.score for x in decided],
            "outcome": [x.outcome for x in decided],
        }
    )


def summarise(decisions: pd.DataFrame) -> dict[str, Any]:
    """Per day and over the period: outcomes, review load, frauds by outcome (count and
    amount), average precision and card precision@100 (see the module docstring)."""
    from sklearn.metrics import average_precision_score

    _, cp_days = card_precision_at_k(
        decisions["day"], decisions["customer_id"], decisions["is_fraud"], decisions["score"]
    )
    days = []
    for (day, rows), cp in zip(decisions.groupby("day", sort=True), cp_days, strict=True):
        days.append({"day": day, **_counts(rows), "card_precision_at_100": cp})
        days[-1]["average_precision"] = (
            float(average_precision_score(rows["is_fraud"], rows["score"]))
            if rows["is_fraud"].any()
            else None
        )
    total = {
        **_counts(decisions),
        "average_precision": float(
            average_precision_score(decisions["is_fraud"], decisions["score"])
        ),
        "card_precision_at_100": float(np.mean(cp_days)) if cp_days else 0.0,
    }
    return {"days": days, "total": total}


def _counts(rows: pd.DataFrame) -> dict[str, Any]:
    fraud = rows[rows["is_fraud"] == 1]
    out: dict[str, Any] = {"transactions": len(rows)}
    for outcome in ("approve", "review", "decline"):
        out[outcome] = int((rows["outcome"] == outcome).sum())
        caught = fraud[fraud["outcome"] == outcome]
        out[f"frauds_{outcome}d" if outcome != "review" else "frauds_reviewed"] = {
            "count": len(caught),
            "amount": round(float(caught["amount"].sum()), 2),
        }
    out["review_load"] = out["review"]
    out["frauds"] = {"count": len(fraud), "amount": round(float(fraud["amount"].sum()), 2)}
    return out


def backtest(
    settings: Settings,
    version: str,
    policy: Policy,
    start: dt.date,
    end: dt.date,
) -> dict[str, Any]:
    """Decide ``start <= day < end``, summarise it, write
    ``var/reports/backtest-<version>.{json,png}``.

    Raises:
        as :func:`decide_history`.
    """
    decisions = decide_history(settings, version, policy, start, end)
    report = {
        "model_version": version,
        "policy": policy.model_dump(mode="json"),
        "from": start.isoformat(),
        "to": end.isoformat(),
        **summarise(decisions),
    }
    folder = settings.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"backtest-{version}.json").write_text(json.dumps(report, indent=2))
    report["png"] = str(write_plot(report, folder / f"backtest-{version}.png"))
    return report


def write_plot(report: dict[str, Any], path: Path) -> Path:
    """Outcomes per day (stacked bars, log scale) and the day's average precision and card
    precision@100."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = report["days"]
    labels = [x["day"][5:] for x in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    base = np.zeros(len(days))
    for outcome, colour in (("approve", "#1a7f37"), ("review", "#9a6700"), ("decline", "#cf222e")):
        counts = np.array([x[outcome] for x in days], dtype=float)
        top.bar(labels, counts, bottom=base, color=colour, label=outcome)
        base += counts
    top.set_yscale("log")
    top.set_ylabel("decisions")
    top.legend(loc="upper right")
    top.set_title(f"Backtest of {report['model_version']}, {report['from']} to {report['to']}")
    for key, name in (
        ("average_precision", "average precision"),
        ("card_precision_at_100", "card precision@100"),
    ):
        bottom.plot(
            labels, [x[key] if x[key] is not None else np.nan for x in days], marker="o", label=name
        )
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("day (UTC)")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_report(report: dict[str, Any]) -> str:
    """The per-day table as text."""
    head = (
        f"{'day':<10} {'tx':>6} {'approve':>8} {'review':>7} {'decline':>8} {'frauds':>7} "
        f"{'declined':>9} {'reviewed':>9} {'missed':>7} {'AP':>6} {'CP@100':>7}"
    )
    lines = [
        f"backtest of {report['model_version']} ({report.get('policy_file') or 'policy v0'}), "
        f"{report['from']} to {report['to']}",
        head,
    ]
    for row in [*report["days"], {"day": "all", **report["total"]}]:
        ap = row["average_precision"]
        lines.append(
            f"{row['day']:<10} {row['transactions']:>6} {row['approve']:>8} {row['review']:>7} "
            f"{row['decline']:>8} {row['frauds']['count']:>7} {row['frauds_declined']['count']:>9} "
            f"{row['frauds_reviewed']['count']:>9} {row['frauds_approved']['count']:>7} "
            f"{(f'{ap:.3f}' if ap is not None else '-'):>6} {row['card_precision_at_100']:>7.3f}"
        )
    if "png" in report:
        lines.append(f"plot: {report['png']}")
    return "\n".join(lines)
