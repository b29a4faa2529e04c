"""A worker that forwards every record from one topic to another and does nothing else.

It is the baseline the scorer is benchmarked against (the cost of Faust and Kafka alone) and
the smallest proof that a Faust agent runs against the real broker. Each record keeps its key
and value. ``python -m services.scorer.passthrough --source A --sink B --group G``.

``--engine aiokafka`` forwards with a plain aiokafka consumer and producer instead (same
group semantics: offsets committed only after the forwarded records are delivered): the
difference between the two is what Faust itself costs (``fraud bench --targets
passthrough,aiokafka-passthrough``).
"""

from __future__ import annotations

import argparse
import sys

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
    """Consume ``source`` in group ``group`` and produce each record to ``sink``; commit a
    fetch's offsets once its records are delivered. Runs until cancelled."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from services.common.connections import aiokafka_kwargs

    kwargs = aiokafka_kwargs(settings.kafka)
    consumer = AIOKafkaConsumer(
        source,
        **kwargs,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**kwargs, acks="all", enable_idempotence=True, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=1000)
            deliveries = [
                await producer.send(sink, key=record.key, value=record.value)
                for records in fetched.values()
                for record in records
            ]
            if deliveries:
                await asyncio.gather(*deliveries)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


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
