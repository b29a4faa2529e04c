"""How fast this machine runs the scorer's own code, measured at the start of a benchmark.

The benchmark machine is shared: the same commit (3c643cf) had p99 18.3 ms at 500 tx/s at 63 %
of a core one day and 38.9 ms at 72 % the next. Each report therefore carries the CPU time of
a fixed piece of work, the scorer's :meth:`Scorer.decide` (features against Redis, model,
drift counts, policy) on the same 2,000 simulated transactions, so that reports from
different days can be compared.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.common.settings import Settings

TRANSACTIONS = 2000
BATCH_SIZES = (1, 10)


async def _decide_cost(settings: Settings, db: int, shadow: bool) -> dict[str, float]:
    from models.registry import ModelRegistry
    from services.common.connections import async_redis_client
    from services.common.events import parse_transaction
    from services.producer.sources import simulated_events
    from services.scorer.bootstrap import build_scorer
    from services.scorer.drift import DriftCounts
    from services.scorer.model import ActiveModel

    model = ActiveModel(ModelRegistry(settings.models_dir))
    model.refresh()
    # alone: whatever the registry has in shadow; with a shadow: the champion as its own
    model.use_shadow(model.current.version if shadow and model.current is not None else None)
    events = simulated_events(customers=5000, terminals=10000, seed=7)
    batch = [parse_transaction(e.value) for e, _ in zip(events, range(TRANSACTIONS), strict=False)]
    client = async_redis_client(settings.redis, db=db)
    out = {}
    try:
        for size in BATCH_SIZES:
            await client.flushdb()
            drift = DriftCounts()
            scorer = build_scorer(client, model, drift=drift)  # wired as the worker wires it
            began = time.process_time()
            for i in range(0, len(batch), size):
                await scorer.decide(batch[i : i + size])
            await scorer.flush()
            drift.flush()  # the worker's one-second timer: about once per run here
            out[str(size)] = round(1e6 * (time.process_time() - began) / len(batch), 1)
        await client.flushdb()
    finally:
        await client.aclose()
    return out


def calibrate(settings: Settings, db: int) -> dict[str, Any]:
    """CPU microseconds per transaction of ``Scorer.decide`` in this process, by micro-batch
    size, on Redis database ``db`` (flushed before and after); the active model must exist.
    Measured twice: as the scorer runs alone, and with a challenger in shadow (the active
    model scores again as its own challenger: what shadow scoring costs).

    Returns:
        ``{"decide_cpu_us_per_tx": {"1": ..., "10": ...},
        "decide_cpu_us_per_tx_with_shadow": {"1": ..., "10": ...}, "transactions": 2000}``.
    """
    return {
        "decide_cpu_us_per_tx": asyncio.run(_decide_cost(settings, db, shadow=False)),
        "decide_cpu_us_per_tx_with_shadow": asyncio.run(_decide_cost(settings, db, shadow=True)),
        "transactions": TRANSACTIONS,
    }
