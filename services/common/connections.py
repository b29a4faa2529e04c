"""Connection arguments of every Kafka and Redis client, built from the settings.

The one place that turns ``FRAUD_KAFKA__*`` and ``FRAUD_REDIS__*`` into client arguments
(address, SASL/SCRAM or Redis ACL credentials, TLS), so that every producer, consumer, admin
client, Faust app and Redis client of the project connects the same way. Knows nothing of
what the clients are used for.

Secrets leave their ``SecretStr`` here only, as :class:`RedactedStr`: a ``str`` the clients
use as usual whose ``repr`` is masked, so a client that logs its configuration
(kafka-python's admin client does, at DEBUG) or a mapping printed in an error shows
``'**********'``.
"""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from services.common.settings import KafkaSettings, RedisSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = [
    "RedactedStr",
    "aiokafka_kwargs",
    "async_redis_client",
    "faust_broker_kwargs",
    "kafka_python_kwargs",
    "kafka_ssl_context",
    "redis_client",
    "redis_kwargs",
]

_MASK = "'**********'"


class RedactedStr(str):
    """A secret as a plain ``str`` for client libraries, with a masked ``repr``.

    ``str()``, ``encode()`` and formatting give the value (clients need it); ``repr`` (and so
    the repr of any dict or list holding it) gives ``'**********'``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return _MASK


def _reveal(secret: SecretStr | None) -> RedactedStr | None:
    return None if secret is None else RedactedStr(secret.get_secret_value())


def kafka_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers' certificates and host names against
    ``ssl_cafile`` (default: the system's trust store)."""
    cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)


def _kafka_auth(kafka: KafkaSettings) -> dict[str, Any]:
    """``security.protocol`` and SASL arguments under the names kafka-python and aiokafka
    share (``sasl_plain_*`` carry SCRAM credentials too)."""
    kwargs: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol != "PLAINTEXT":
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=_reveal(kafka.sasl_password),
        )
    if kafka.security_protocol == "SASL_SSL":
        kwargs["ssl_context"] = kafka_ssl_context(kafka)
    return kwargs


def kafka_python_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Arguments for kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and
    ``KafkaAdminClient``: ``bootstrap_servers`` plus security."""
    return {"bootstrap_servers": kafka.bootstrap_servers, **_kafka_auth(kafka)}


def aiokafka_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Arguments for aiokafka's ``AIOKafkaProducer`` and ``AIOKafkaConsumer``:
    ``bootstrap_servers`` plus security (aiokafka takes TLS only as an ``ssl_context``)."""
    return {"bootstrap_servers": kafka.bootstrap_servers, **_kafka_auth(kafka)}


def faust_broker_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Arguments for ``faust.App``: ``broker`` URLs and, under SASL, ``broker_credentials``
    (``faust.SASLCredentials``; with a TLS context Faust speaks SASL_SSL)."""
    import faust  # heavy: only the worker builds Faust apps

    kwargs: dict[str, Any] = {
        "broker": [f"kafka://{b.strip()}" for b in kafka.bootstrap_servers.split(",")]
    }
    if kafka.security_protocol != "PLAINTEXT":
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=_reveal(kafka.sasl_password),
            mechanism=kafka.sasl_mechanism,
            ssl_context=kafka_ssl_context(kafka) if kafka.security_protocol == "SASL_SSL" else None,
        )
    return kwargs


def redis_kwargs(cfg: RedisSettings) -> dict[str, Any]:
    """Arguments for redis-py's ``Redis`` and ``RedisCluster`` (sync and ``redis.asyncio``):
    address, database and, when set, the ACL user's credentials."""
    kwargs: dict[str, Any] = {"host": cfg.host, "port": cfg.port}
    if not cfg.cluster:
        kwargs["db"] = cfg.db
    if cfg.username is not None:
        kwargs["username"] = cfg.username
    if cfg.password is not None:
        kwargs["password"] = _reveal(cfg.password)
    return kwargs


def redis_client(cfg: RedisSettings, **options: Any) -> redis.Redis:
    """A synchronous redis-py client (a ``RedisCluster`` with ``cluster``); ``options``
    (``db``, timeouts) override or add."""
    import redis
    import redis.cluster

    if cfg.cluster:
        return redis.cluster.RedisCluster(**{**redis_kwargs(cfg), **options})  # type: ignore[return-value]
    return redis.Redis(**{**redis_kwargs(cfg), **options})


def async_redis_client(cfg: RedisSettings, **options: Any) -> redis.asyncio.Redis:
    """A ``redis.asyncio`` client; create it inside the event loop that will use it.

    Its connections pack commands with hiredis, as redis-py's synchronous client does (the
    asyncio one packs in Python: 12 % of the scorer's CPU at 5,000 tx/s under py-spy).
    """
    import redis.asyncio

    if cfg.cluster:  # commands are packed by the cluster client's own connections
        return redis.asyncio.RedisCluster(**{**redis_kwargs(cfg), **options})  # type: ignore[return-value]
    pool = redis.asyncio.ConnectionPool(
        connection_class=_hiredis_packing_connection(), **{**redis_kwargs(cfg), **options}
    )
    return redis.asyncio.Redis.from_pool(pool)


@functools.cache
def _hiredis_packing_connection() -> type[redis.asyncio.Connection]:
    import redis.asyncio
    from redis.connection import HiredisRespSerializer

    class HiredisPackingConnection(redis.asyncio.Connection):
        """redis-py's asyncio connection with redis-py's own hiredis command packer."""

        _packer = HiredisRespSerializer()

        def pack_command(self, *args: Any) -> list[bytes]:
            packed: list[bytes] = self._packer.pack(*args)
            return packed

    return HiredisPackingConnection
