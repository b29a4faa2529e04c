"""The shadow comparison in Redis: the champion's and the challenger's view of each
transaction decided while a challenger is in shadow, and the labels those transactions got.

Two hashes, written by the recording worker and read by the admin API
(``GET /v1/models/shadow``); ``POST /v1/models/{version}/shadow`` empties them when a new
challenger starts:

- ``shadow:decisions``: transaction id -> JSON ``[challenger, champion, champion score,
  champion outcome, challenger score, challenger outcome, card, event time ms]``, written with
  HSETNX from the decision the store kept (a transaction's first);
- ``shadow:labels``: transaction id -> ``1`` (fraud) or ``0`` (genuine), for transactions of
  ``shadow:decisions`` only; a fraud label from any source wins over a genuine one.

Both expire with the decision store's retention after their last write. A label that arrives
before its transaction's decision is stored is not counted (labels come days later: the
handbook's label delay is 7 days). No multi-key command, so it works on Redis Cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from services.common.decision import OUTCOMES, Decision
from services.common.events import Label

DECISIONS_KEY = "shadow:decisions"
LABELS_KEY = "shadow:labels"
MS_PER_DAY = 86_400_000


def queue_decisions(pipe: Any, decisions: Sequence[Decision], retention_ms: int) -> None:
    """Add the decisions that carry a challenger's score to a Redis pipeline."""
    written = False
    for d in decisions:
        if d.shadow is None or d.score is None:
            continue
        row = (
            d.shadow.model_version,
            d.model_version,
            d.score,
            d.outcome,
            d.shadow.score,
            d.shadow.outcome,
            d.customer_id,
            d.event_time_ms,
        )
        pipe.hsetnx(DECISIONS_KEY, d.transaction_id, orjson.dumps(row))
        written = True
    if written:
        pipe.pexpire(DECISIONS_KEY, retention_ms)


async def record_labels(client: Any, labels: Sequence[Label], retention_ms: int) -> int:
    """Keep the labels of transactions in the comparison; return how many were kept.

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    if not labels:
        return 0
    ids = [label.transaction_id for label in labels]
    present = await client.hmget(DECISIONS_KEY, ids)
    pipe = client.pipeline(transaction=False)
    kept = 0
    for label, found in zip(labels, present, strict=True):
        if found is None:
            continue
        if label.is_fraud:
            pipe.hset(LABELS_KEY, label.transaction_id, 1)
        else:
            pipe.hsetnx(LABELS_KEY, label.transaction_id, 0)
        kept += 1
    if kept:
        pipe.pexpire(LABELS_KEY, retention_ms)
        await pipe.execute()
    return kept


async def clear(client: Any) -> None:
    """Forget the comparison (a new challenger starts)."""
    await client.delete(DECISIONS_KEY)
    await client.delete(LABELS_KEY)


async def compare(client: Any, challenger: str) -> dict[str, Any]:
    """The champion against ``challenger`` on the transactions both scored.

    Returns:
        ``transactions``; ``agreement`` (share with the same outcome, None without any);
        ``outcomes`` per side (``champion``, ``challenger``: count per outcome); ``changes``:
        count per ``"<champion outcome>-><challenger outcome>"`` where they differ; and
        ``labelled``: ``transactions``, ``frauds`` and per side ``average_precision`` and
        ``card_precision_at_100`` over the labelled transactions (None until both classes
        are present); ``champions``: transactions per champion version (more than one when
        another version was promoted during the shadow). Definitions: handbook chapter 4
        (``models.metrics``), days in UTC. Transactions another challenger scored are left
        out.

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    from models.metrics import card_precision_at_k

    rows = [
        (tx.decode(), orjson.loads(raw))
        for tx, raw in (await client.hgetall(DECISIONS_KEY)).items()
    ]
    rows = [(tx, row) for tx, row in rows if row[0] == challenger]
    labels = {tx.decode(): int(v) for tx, v in (await client.hgetall(LABELS_KEY)).items()}
    outcomes = {side: dict.fromkeys(OUTCOMES, 0) for side in ("champion", "challenger")}
    changes: Counter[str] = Counter()
    for _, row in rows:
        outcomes["champion"][row[3]] += 1
        outcomes["challenger"][row[5]] += 1
        if row[3] != row[5]:
            changes[f"{row[3]}->{row[5]}"] += 1
    same = len(rows) - sum(changes.values())
    labelled = [(tx, row) for tx, row in rows if tx in labels]
    y = np.array([labels[tx] for tx, _ in labelled], dtype=np.int64)
    metrics: dict[str, Any] = {"transactions": len(labelled), "frauds": int(y.sum())}
    for side, column in (("champion", 2), ("challenger", 4)):
        if 0 < y.sum() < len(y):
            from sklearn.metrics import average_precision_score

            scores = np.array([row[column] for _, row in labelled], dtype=np.float64)
            days = [row[7] // MS_PER_DAY for _, row in labelled]
            cards = [row[6] for _, row in labelled]
            cp, _ = card_precision_at_k(days, cards, y, scores, k=100)
            metrics[side] = {
                "average_precision": float(average_precision_score(y, scores)),
                "card_precision_at_100": cp,
            }
        else:
            metrics[side] = {"average_precision": None, "card_precision_at_100": None}
    return {
        "transactions": len(rows),
        "champions": dict(Counter(row[1] for _, row in rows)),
        "agreement": same / len(rows) if rows else None,
        "outcomes": outcomes,
        "changes": dict(sorted(changes.items())),
        "labelled": metrics,
    }
