"""Builds Faust applications wired to the configured Kafka cluster.

The only module of the scorer that knows how Faust is configured. Settings chosen for a
low-latency, at-least-once worker: uvloop unless told otherwise, no web server unless asked,
in-memory tables (state lives in Redis).
"""

from __future__ import annotations

import faust
import mode.loop
from faust.app.base import BootStrategy

from services.common.connections import faust_broker_kwargs
from services.common.settings import Settings


def use_event_loop(settings: Settings) -> None:
    """Install the configured event loop policy (``FRAUD_SCORER__EVENT_LOOP``) for this
    process; call it before building the app, which takes the policy's loop. uvloop used 3 to
    6 points less of a core than asyncio at 500 and 1,000 tx/s (two paired `fraud bench`
    runs)."""
    mode.loop.use("uvloop" if settings.scorer.event_loop == "uvloop" else "aio")


class _ServiceBoot(BootStrategy):
    """Faust's worker lifecycle, tasks and timers without its Kafka consumer and producer
    (the app's tasks run their own clients)."""

    enable_kafka = False


class ServiceApp(faust.App):
    """A Faust app that starts no Kafka client of its own (Faust's consumer refuses to start
    with no topic to subscribe to)."""

    BootStrategy = _ServiceBoot


def make_app(
    settings: Settings, app_id: str, web_port: int | None = None, kafka: bool = True
) -> faust.App:
    """A Faust app in consumer group ``app_id`` on ``settings.kafka`` (brokers, SASL).

    Args:
        app_id: the consumer group id; replicas with the same id share the partitions.
        web_port: serve Faust's web views there; None disables them.
        kafka: False for an app whose agents are tasks with their own Kafka clients: Faust
            starts neither its consumer nor its producer.
    """
    app_class = faust.App if kafka else ServiceApp
    (settings.var_dir / "faust").mkdir(parents=True, exist_ok=True)
    return app_class(
        app_id,
        **faust_broker_kwargs(settings.kafka),
        store="memory://",
        # Faust makes this folder even for in-memory tables; by default in the working
        # directory (the repository), named after the app
        datadir=str(settings.var_dir / "faust" / "{conf.name}-data"),
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_host="127.0.0.1",
        topic_allow_declare=False,  # the contract topics are created by `fraud up`
        topic_disable_leader=True,
        producer_linger_ms=0,
        consumer_auto_offset_reset="earliest",
        # a crashed replica's partitions move after this long (Faust's default is 60 s)
        broker_session_timeout=settings.scorer.session_timeout_s,
        broker_heartbeat_interval=settings.scorer.session_timeout_s / 3,
    )
