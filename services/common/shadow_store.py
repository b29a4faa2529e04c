"""The shadow comparison in Redis: outcome counts of the transactions decided while a
challenger is in shadow, and both scores of those that got a label.

Written by the recording worker, read by the admin API (``GET /v1/models/shadow``);
``POST /v1/models/{version}/shadow`` empties it when a new challenger starts. Two keys per
challenger, each expiring with the decision store's retention after its last write:

- ``shadow:{challenger}:counts``: hash, ``"<champion>|<champion outcome>|<challenger
  outcome>"`` -> transactions, counted once per transaction (from the decision the store kept
  first; a crash between the store's write and the count loses that count, never doubles it);
- ``shadow:{challenger}:labelled``: hash, transaction id -> JSON ``[champion score,
  challenger score, card, event time ms, is_fraud]`` for each transaction of the comparison
  that got a label (the label joined with its stored decision when the label arrives); a
  fraud label from any source wins over a genuine one.

Memory grows with the labelled transactions only (chargebacks and verdicts), not with the
traffic. No multi-key command, so it works on Redis Cluster.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from services.common.decision import OUTCOMES, Decision, decode
from services.common.events import Label

MS_PER_DAY = 86_400_000


def counts_key(challenger: str) -> str:
    return f"shadow:{challenger}:counts"


def labelled_key(challenger: str) -> str:
    return f"shadow:{challenger}:labelled"


def queue_decisions(pipe: Any, decisions: Sequence[Decision], retention_ms: int) -> None:
    """Count newly stored decisions that carry a challenger's score (a Redis pipeline)."""
    keys = set()
    for d in decisions:
        if d.shadow is None:
            continue
        key = counts_key(d.shadow.model_version)
        pipe.hincrby(key, f"{d.model_version}|{d.outcome}|{d.shadow.outcome}", 1)
        keys.add(key)
    for key in keys:
        pipe.pexpire(key, retention_ms)


async def record_labels(client: Any, labels: Sequence[Label], retention_ms: int) -> int:
    """Keep both scores of each labelled transaction that a challenger scored; return how
    many were kept.

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    from services.common.decision_store import decision_key

    if not labels:
        return 0
    pipe = client.pipeline(transaction=False)
    for label in labels:
        pipe.get(decision_key(label.transaction_id))
    stored = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    keys, kept = set(), 0
    for label, raw in zip(labels, stored, strict=True):
        decision = decode(raw) if raw else None
        if decision is None or decision.shadow is None or decision.score is None:
            continue
        if not (math.isfinite(decision.score) and math.isfinite(decision.shadow.score)):
            continue
        key = labelled_key(decision.shadow.model_version)
        row = orjson.dumps(
            (
                decision.score,
                decision.shadow.score,
                decision.customer_id,
                decision.event_time_ms,
                int(label.is_fraud),
            )
        )
        if label.is_fraud:
            pipe.hset(key, label.transaction_id, row)
        else:
            pipe.hsetnx(key, label.transaction_id, row)
        keys.add(key)
        kept += 1
    for key in keys:
        pipe.pexpire(key, retention_ms)
    if kept:
        await pipe.execute()
    return kept


async def clear(client: Any, challenger: str) -> None:
    """Forget ``challenger``'s comparison (it starts again)."""
    await client.delete(counts_key(challenger))
    await client.delete(labelled_key(challenger))


async def compare(client: Any, challenger: str) -> dict[str, Any]:
    """The champion against ``challenger`` on the transactions both scored.

    Returns:
        ``transactions``; ``champions``: transactions per champion version (more than one
        when another version was promoted during the shadow); ``agreement`` (share with the
        same outcome, None without any); ``outcomes`` per side (``champion``, ``challenger``:
        count per outcome); ``changes``: count per ``"<champion outcome>-><challenger
        outcome>"`` where they differ; and ``labelled``: ``transactions``, ``frauds`` and per
        side ``average_precision`` and ``card_precision_at_100`` over the labelled
        transactions (None until both classes are present). Definitions: handbook chapter 4
        (``models.metrics``), days in UTC.

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    return summarize(*await compare_raw(client, challenger))


async def compare_raw(client: Any, challenger: str) -> tuple[dict[str, int], list[list[Any]]]:
    """The counts and labelled rows :func:`summarize` turns into :func:`compare`'s figures.

    Raises:
        redis.RedisError: Redis is unreachable.
    """
    raw_counts = await client.hgetall(counts_key(challenger))
    counts = {field.decode(): int(n) for field, n in raw_counts.items()}
    rows = [orjson.loads(raw) for raw in (await client.hgetall(labelled_key(challenger))).values()]
    return counts, rows


def summarize(counts: dict[str, int], rows: list[list[Any]]) -> dict[str, Any]:
    """:func:`compare`'s figures from the raw counts and labelled rows."""
    from models.metrics import card_precision_at_k

    outcomes: dict[str, dict[str, int]] = {
        side: dict.fromkeys(OUTCOMES, 0) for side in ("champion", "challenger")
    }
    changes: Counter[str] = Counter()
    champions: Counter[str] = Counter()
    for field, n in counts.items():
        champion, mine, theirs = field.split("|")
        champions[champion] += n
        outcomes["champion"][mine] += n
        outcomes["challenger"][theirs] += n
        if mine != theirs:
            changes[f"{mine}->{theirs}"] += n
    total = sum(counts.values())
    y = np.array([row[4] for row in rows], dtype=np.int64)
    labelled: dict[str, Any] = {"transactions": len(rows), "frauds": int(y.sum())}
    for side, column in (("champion", 0), ("challenger", 1)):
        labelled[side] = {"average_precision": None, "card_precision_at_100": None}
        if 0 < y.sum() < len(y):
            from sklearn.metrics import average_precision_score

            scores = np.array([row[column] for row in rows], dtype=np.float64)
            days = [row[3] // MS_PER_DAY for row in rows]
            cp, _ = card_precision_at_k(days, [row[2] for row in rows], y, scores, k=100)
            labelled[side] = {
                "average_precision": float(average_precision_score(y, scores)),
                "card_precision_at_100": cp,
            }
    return {
        "transactions": total,
        "champions": dict(champions),
        "agreement": (total - sum(changes.values())) / total if total else None,
        "outcomes": outcomes,
        "changes": dict(sorted(changes.items())),
        "labelled": labelled,
    }
