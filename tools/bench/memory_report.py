"""``fraud bench-memory``: memory of the feature state and the decision store against the
number of cards and terminals, in bytes per entity; writes ``var/reports/memory.json`` and
``memory.md``.

Each population is measured on samples (:mod:`tools.bench.memory`) in a private
``redis-server``; a family's bytes at the population are its sample's bytes times the
population's cards (or terminals) over the sampled ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from services.common.settings import Settings
from tools.bench import memory as m
from tools.bench.private_redis import private_redis

DEFAULT_POPULATIONS = (5_000, 50_000, 500_000)
DEFAULT_DAYS = 120.0
"""Event time simulated: well past the cards' 45-day and the terminals' 52-day horizons."""
SAMPLE_CARDS = 1_000
LEVELLING_RETENTION_S = 20.0
LEVELLING_RATE_TPS = 1_000.0
"""The retention check: decisions stored at this rate with this retention, for three times as
long; the store must stop growing after one retention."""
SAMPLE_TERMINALS = 2_000
ENTITY = {
    "card_history": "card",
    "terminal_history": "terminal",
    "txid": "transaction id",
    "dec": "decision",
    "dec:customer": "card",
    "dec:terminal": "terminal",
    "dec:outcome": "index entry",
    "dec:review": "review entry",
}
"""What each key family's bytes are counted per."""


def summarise(name: str, family: dict[str, Any], sample: m.Sample) -> dict[str, Any]:
    """Adds bytes per entity and the family's keys and bytes at the whole population."""
    cards, terminals = int(sample.cards.sum()), int(sample.terminals.sum())
    scale = (
        (len(sample.terminals) / terminals)
        if name in ("terminal_history", "dec:terminal")
        else len(sample.cards) / cards
    )
    counted = {
        "card": cards,
        "terminal": terminals,
        "review entry": family["entries"],
        "index entry": family["entries"],
    }
    entities = counted.get(ENTITY[name], family["keys"])
    per = (lambda b: round(b / entities, 1)) if entities else (lambda b: None)
    return {
        **family,
        "entity": ENTITY[name],
        "per_entity_memory_usage": per(family["memory_usage"]),
        "per_entity_used_memory": per(family["used_memory_released"]),
        "entities_at_population": round(entities * scale),
        # one review queue and three outcome indexes whatever the population; every other
        # family has keys per entity
        "keys_at_population": family["keys"]
        if name in ("dec:review", "dec:outcome")
        else round(family["keys"] * scale),
        "bytes_at_population": round(family["memory_usage"] * scale),
        "used_memory_at_population": round(family["used_memory_released"] * scale),
    }


async def measure_population(
    port: int, customers: int, days: float, cards: int, terminals: int, model: Any, log: Any
) -> dict[str, Any]:
    """One population, measured on ``cards`` cards and ``terminals`` terminals."""
    import redis.asyncio as aioredis

    began = time.monotonic()
    client = aioredis.Redis(port=port)
    try:
        await client.flushall()
        sample = m.Sample.draw(customers, cards, terminals)
        filled = await m.fill(client, customers, sample, days, model)
        filled_s = time.monotonic() - began
        families = await m.measure_feature_state(client, sample)
        families |= await m.measure_ids(client, filled)
        families |= await m.measure_decisions(client, filled, sample)
        await client.flushall()
    finally:
        await client.aclose()
    out = {name: summarise(name, f, sample) for name, f in families.items()}
    result = {
        "customers": customers,
        "terminals": customers * m.TERMINALS_PER_CARD,
        "sampled_cards": int(sample.cards.sum()),
        "sampled_terminals": int(sample.terminals.sum()),
        "events_scored": filled.events,
        "outcomes": dict(filled.outcomes),
        "families": out,
        "total_bytes": sum(f["bytes_at_population"] for f in out.values()),
        "total_used_memory": sum(f["used_memory_at_population"] for f in out.values()),
        "fill_seconds": round(filled_s, 1),
        "seconds": round(time.monotonic() - began, 1),
    }
    log(f"{customers:>9,} cards: {result['total_bytes'] / 2**20:,.1f} MiB in {result['seconds']} s")
    return result


async def _server(port: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        info = await client.info("server")
        config = await client.config_get("zset-max-listpack-*")
    finally:
        await client.aclose()
    return {"redis_version": info["redis_version"], **config}


def run(
    settings: Settings,
    populations: tuple[int, ...] = DEFAULT_POPULATIONS,
    days: float = DEFAULT_DAYS,
    cards: int = SAMPLE_CARDS,
    terminals: int = SAMPLE_TERMINALS,
    log: Any = print,
    levelling_retention_s: float = LEVELLING_RETENTION_S,
) -> dict[str, Any]:
    """Every population in one private Redis, then the retention check (``levelling``: skipped
    when ``levelling_retention_s`` is 0); writes ``memory.json`` and ``memory.md``.

    Decision records come from the registry's active model; without one they are the
    degraded records the scorer then writes (no score, no reasons), which the report says.
    """
    from models.registry import ModelRegistry
    from services.scorer.model import ActiveModel

    model = ActiveModel(ModelRegistry(settings.models_dir))
    model.refresh()
    began = time.monotonic()

    async def measure_all(port: int) -> list[dict[str, Any]]:
        return [
            await measure_population(port, n, days, cards, terminals, model, log)
            for n in populations
        ]

    with private_redis() as port:
        server = asyncio.run(_server(port))
        results = asyncio.run(measure_all(port))
        level = (
            asyncio.run(check_levelling(port, levelling_retention_s, LEVELLING_RATE_TPS, log))
            if levelling_retention_s > 0
            else None
        )
    report = {
        "populations": results,
        "levelling": level,
        "days": days,
        "tx_per_card_per_day": m.TX_PER_CARD_PER_DAY,
        "store_days": m.STORE_DAYS,
        "model_version": model.current.version if model.current else None,
        "server": server,
        "seconds": round(time.monotonic() - began, 1),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    folder = settings.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.json").write_text(json.dumps(report, indent=2))
    (folder / "memory.md").write_text(markdown(report))
    return report


async def check_levelling(
    port: int, retention_s: float, rate_tps: float, log: Any = print
) -> dict[str, Any]:
    """The store under a retention of ``retention_s``, written at ``rate_tps`` for three
    retentions: the series, and whether keys and memory stopped growing after the first.

    ``levelled``: the most keys and the most ``used_memory`` over the last retention are no
    more than 10 % above those over the second. ``expected_keys`` is what one retention holds
    (``rate_tps * retention_s`` decisions, the indexes of the cards they belong to, each
    record a card of 50,000 and a terminal of 100,000 in turn, the outcome indexes of approve
    and review, the latest decisions' list and the review queue); Redis reclaims expired keys a
    little late (its active expiry samples keys ten times a second), so the store holds
    somewhat more.
    """
    import redis.asyncio as aioredis

    log(f"levelling: retention {retention_s:g} s at {rate_tps:g} decisions/s")
    client = aioredis.Redis(port=port)
    try:
        series = await m.levelling(client, retention_s, rate_tps, 3 * retention_s)
    finally:
        await client.aclose()
    second = [p for p in series if retention_s <= p["t_s"] < 2 * retention_s]
    last = [p for p in series if p["t_s"] >= 2 * retention_s]
    decisions = rate_tps * retention_s
    cards, terminals = min(decisions, 50_000.0), min(decisions, 100_000.0)
    expected = decisions + cards + terminals + 2 + 1 + 1
    mean_keys = sum(p["keys"] for p in last) / max(len(last), 1)
    keys_second = max((p["keys"] for p in second), default=0.0)
    keys_last = max((p["keys"] for p in last), default=0.0)
    memory_second = max((p["used_memory"] for p in second), default=0.0)
    memory_last = max((p["used_memory"] for p in last), default=0.0)
    return {
        "retention_s": retention_s,
        "rate_tps": rate_tps,
        "series": series,
        "expected_keys": expected,
        "mean_keys_last_retention": round(mean_keys, 1),
        "max_used_memory_second_retention": memory_second,
        "max_used_memory_last_retention": memory_last,
        "levelled": bool(last and second)
        and keys_last <= 1.1 * keys_second
        and memory_last <= 1.1 * memory_second,
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _bytes(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    """Bytes per entity, totals at each population, and encodings seen, as Markdown."""
    pops = report["populations"]
    head = " | ".join(f"{p['customers']:,} cards" for p in pops)
    rule = "|---|---|" + "---|" * len(pops)
    per = [f"| family | bytes per | {head} |", rule]
    totals = [f"| family | keys at | {head} |", rule]
    for name, entity in ENTITY.items():
        fams = [p["families"][name] for p in pops]
        per.append(
            f"| `{name}` | {entity} | "
            + " | ".join(
                f"{_bytes(f['per_entity_memory_usage'])} ({_bytes(f['per_entity_used_memory'])})"
                for f in fams
            )
            + " |"
        )
        totals.append(
            f"| `{name}` | {entity} | "
            + " | ".join(
                f"{f['keys_at_population']:,} keys, {_mib(f['bytes_at_population'])} MiB"
                for f in fams
            )
            + " |"
        )
    totals.append(
        "| all | | "
        + " | ".join(
            f"{_mib(p['total_bytes'])} MiB ({_mib(p['total_used_memory'])} MiB used)" for p in pops
        )
        + " |"
    )
    lines = [
        *per,
        "",
        *totals,
        "",
        "Encodings (keys, mean MEMORY USAGE per key, entries per key):",
        "",
    ]
    for p in pops:
        lines.append(
            f"- {p['customers']:,} cards: "
            + "; ".join(
                f"`{name}` "
                + ", ".join(
                    f"{enc} {n} ({_bytes(f['memory_usage_per_key_by_encoding'][enc])} B)"
                    for enc, n in f["encodings"].items()
                )
                + f", {_entries(f)} entries"
                for name, f in p["families"].items()
            )
        )
    lines += ["", _method(report)]
    if report.get("levelling"):
        lines += ["", _levelling(report["levelling"])]
    return "\n".join(lines) + "\n"


def _levelling(level: dict[str, Any]) -> str:
    retention = level["retention_s"]
    rows = [
        f"Retention check: decisions stored at {level['rate_tps']:,.0f} per second with a "
        f"retention of {retention:g} s, for {3 * retention:g} s "
        f"({'levelled' if level['levelled'] else 'NOT levelled'}: "
        f"{level['mean_keys_last_retention']:,.0f} keys on average over the last {retention:g} s"
        f" against {level['expected_keys']:,.0f} expected; used_memory at most "
        f"{_mib(level['max_used_memory_last_retention'])} MiB then, "
        f"{_mib(level['max_used_memory_second_retention'])} MiB over the second {retention:g} s).",
        "",
        "| seconds | keys | used_memory (MiB) |",
        "|---|---|---|",
    ]
    rows += [
        f"| {p['t_s']:g} | {p['keys']:,.0f} | {_mib(p['used_memory'])} |" for p in level["series"]
    ]
    return "\n".join(rows)


def _entries(family: dict[str, Any]) -> str:
    return f"{family['entries'] / family['keys']:.1f}" if family["keys"] else "-"


def _method(report: dict[str, Any]) -> str:
    server = report["server"]
    last = report["populations"][-1]
    dec = last["families"]["dec"]
    index = last["families"]["dec:customer"]
    per_tx = dec["per_entity_memory_usage"] + index["memory_usage"] / max(index["entries"], 1)
    return (
        f"Per entity: MEMORY USAGE ... SAMPLES 0 (in brackets: used_memory released by "
        f"deleting the keys, expiry entries included) over {last['sampled_cards']:,} sampled "
        f"cards and {last['sampled_terminals']:,} sampled terminals per population, after "
        f"{report['days']:g} days of simulated stream at {report['tx_per_card_per_day']:g} "
        f"transactions per card per day; ids and decisions of the last "
        f"{report['store_days']:g} days (ids and decisions expire then: `dec` and "
        f"`dec:customer` hold about {per_tx:,.0f} bytes per transaction of the last "
        f"{report['store_days']:g} days); totals scaled to the population. Decisions by model "
        f"{report['model_version'] or 'none (degraded records)'}. Redis "
        f"{server['redis_version']}, zset listpack limits "
        f"{server.get('zset-max-listpack-entries')} entries, "
        f"{server.get('zset-max-listpack-value')} bytes. Run took {report['seconds']} s."
    )
