"""A worker that forwards every record from one topic to another and does nothing else.

It is the baseline the scorer is benchmarked against (the cost of Faust and Kafka alone) and
the smallest proof that a Faust agent runs against the real broker. Each record keeps its key
and value. ``python -m tools.bench.passthrough --source A --sink B --group G``.

``--engine aiokafka`` forwards with the scorer's own aiokafka consumption loop and producer
instead (offsets committed only after the forwarded records are delivered): the difference
between the two is what Faust itself costs (``fraud bench --targets
passthrough,aiokafka-passthrough``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from services.common.settings import Settings
from services.scorer.faust_app import make_app, use_event_loop


def build(settings: Settings, source: str, sink: str, group: str):  # type: ignore[no-untyped-def]
    """The passthrough app: one agent, ``source`` -> ``sink``, bytes in and out."""
    app = make_app(settings, group)
    source_topic = app.topic(source, value_serializer="raw", key_serializer="raw")
    sink_topic = app.topic(sink, value_serializer="raw", key_serializer="raw")

    @app.agent(source_topic)
    async def forward(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            await sink_topic.send(key=event.key, value=event.value)

    return app


async def forward_plain(settings: Settings, source: str, sink: str, group: str) -> None:
    """Forward ``source`` to ``sink`` through the scorer's own consumption loop
    (:func:`consume_transactions`, group ``group``) with nothing in between: each batch's
    records are delivered before its offsets are committed. Runs until cancelled."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from services.common.connections import aiokafka_kwargs
    from services.scorer.side_consumers import consume_transactions

    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings.kafka), acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()

    async def forward(records: Sequence[Any]) -> None:
        deliveries = [await producer.send(sink, key=r.key, value=r.value) for r in records]
        await asyncio.gather(*deliveries)

    try:
        await consume_transactions(settings, forward, topic=source, group_id=group)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    from faust import Worker

    parser = argparse.ArgumentParser(prog="passthrough", description=__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", default="fraud-passthrough")
    parser.add_argument("--loglevel", default="warning")
    parser.add_argument("--engine", choices=("faust", "aiokafka"), default="faust")
    args = parser.parse_args(argv)
    settings = Settings()
    use_event_loop(settings)  # the same loop as the scorer: the baseline is like for like
    if args.engine == "aiokafka":
        import asyncio
        import contextlib

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(forward_plain(settings, args.source, args.sink, args.group))
        return 0
    app = build(settings, args.source, args.sink, args.group)
    Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
