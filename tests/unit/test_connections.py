"""Credential settings and the client arguments built from them (no server needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.connections import (
    aiokafka_kwargs,
    faust_broker_kwargs,
    kafka_python_kwargs,
    redis_kwargs,
)
from services.common.feast_store import FeatureStoreError, feast_redis_connection
from services.common.settings import KafkaSettings, RedisSettings, Settings
from services.stack.redis_server import acl_rules

PASSWORD = "Zq8-not-a-real-secret-4Kx"
SCRAM = {
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_username": "scorer",
    "sasl_password": PASSWORD,
}


def test_defaults_stay_plaintext_without_credentials() -> None:
    assert kafka_python_kwargs(KafkaSettings()) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert redis_kwargs(RedisSettings()) == {"host": "127.0.0.1", "port": 6379, "db": 0}


def test_scram_settings_reach_every_kafka_client_family() -> None:
    kafka = KafkaSettings(**SCRAM, sasl_mechanism="SCRAM-SHA-512")
    expected = {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "scorer",
        "sasl_plain_password": PASSWORD,
    }
    assert kafka_python_kwargs(kafka) == expected
    assert aiokafka_kwargs(kafka) == expected
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    faust = faust_broker_kwargs(kafka)
    assert faust["broker"] == ["kafka://127.0.0.1:9092"]
    # what Faust hands aiokafka, by Faust's own translation
    assert credentials_to_aiokafka_auth(faust["broker_credentials"]) == {
        **{k: v for k, v in expected.items() if k != "bootstrap_servers"},
        "ssl_context": None,
    }


def test_sasl_ssl_verifies_the_broker_certificate() -> None:
    import ssl

    kafka = KafkaSettings(**{**SCRAM, "security_protocol": "SASL_SSL"})
    context = kafka_python_kwargs(kafka)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    faust = faust_broker_kwargs(kafka)["broker_credentials"]
    assert faust.protocol.value == "SASL_SSL"


def test_secrets_are_masked_in_repr_of_settings_and_arguments() -> None:
    settings = Settings(kafka=SCRAM, redis={"username": "api", "password": PASSWORD})
    for shown in (
        repr(settings),
        str(settings),
        repr(kafka_python_kwargs(settings.kafka)),
        repr(redis_kwargs(settings.redis)),
        repr(faust_broker_kwargs(settings.kafka)),
    ):
        assert PASSWORD not in shown


@pytest.mark.parametrize(
    ("kafka", "variable"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_username": "scorer"}, "SASL_PASSWORD"),
        ({"sasl_username": "scorer", "sasl_password": PASSWORD}, "SECURITY_PROTOCOL"),
        ({**SCRAM, "sasl_password": "changeme"}, "FRAUD_KAFKA__SASL_PASSWORD"),
        ({**SCRAM, "sasl_mechanism": "PLAIN"}, "sasl_mechanism"),
    ],
)
def test_bad_kafka_security_fails_naming_the_variable(kafka: dict[str, str], variable: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(kafka=kafka)
    assert variable in str(error.value)
    assert PASSWORD not in str(error.value)


def test_redis_username_needs_a_password_and_errors_hide_the_input() -> None:
    with pytest.raises(ValidationError, match="FRAUD_REDIS__PASSWORD"):
        Settings(redis={"username": "api"})
    with pytest.raises(ValidationError) as error:
        Settings(api={"bootstrap_admin_key": "short-secret-value"})
    assert "short-secret-value" not in str(error.value)


def test_feast_connection_string_carries_credentials_as_json_strings() -> None:
    import json

    cfg = RedisSettings(port=6380, db=2, username="api", password="12345678901")
    assert (
        feast_redis_connection(cfg) == '127.0.0.1:6380,db=2,username="api",password="12345678901"'
    )
    # Feast's parser JSON-decodes each value: the password must stay a string
    assert json.loads(feast_redis_connection(cfg).rsplit("password=", 1)[1]) == "12345678901"
    with pytest.raises(FeatureStoreError, match="FRAUD_REDIS__PASSWORD"):
        feast_redis_connection(RedisSettings(password="a,b-not-a-real-secret"))


def test_acl_rules_turn_default_off_and_store_only_a_hash() -> None:
    import hashlib

    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert acl_rules(RedisSettings()) is None
    assert acl_rules(RedisSettings(username="api", password=PASSWORD)) == (
        f"user default off\nuser api on #{digest} ~* &* +@all\n"
    )
    assert acl_rules(RedisSettings(password=PASSWORD)) == f"user default on #{digest} ~* &* +@all\n"


@pytest.mark.parametrize(
    "command",
    [
        ("SET", "txid:é-1", b"\x00\xff", "NX", "GET", "EX", 3024000),
        ("ZADD", "fs:t:7", 1533686102000, "tx-1", 1.5e-7, "tx-2"),
        ("ZRANGE", "fs:t:7", 1533686102000, "+inf", "BYSCORE", "WITHSCORES"),
        ("CONFIG GET", "maxmemory"),
        ("SET", "big", b"x" * 100_000),
        ("SET", "view", memoryview(b"abc")),
    ],
)
def test_async_client_packs_commands_as_redis_py_does(command: tuple[object, ...]) -> None:
    """The hiredis packer against redis-py's own Python packer, byte for byte."""
    import redis.asyncio

    from services.common.connections import async_redis_client

    cfg = RedisSettings(username="scorer", password=PASSWORD)
    pool = async_redis_client(cfg, socket_timeout=None).connection_pool
    ours = pool.connection_class(**pool.connection_kwargs)
    reference = redis.asyncio.Connection(**pool.connection_kwargs)
    assert type(ours) is not redis.asyncio.Connection
    assert (ours.username, ours.password) == ("scorer", PASSWORD)
    assert b"".join(bytes(c) for c in ours.pack_command(*command)) == b"".join(
        bytes(c) for c in reference.pack_command(*command)
    )


def test_a_redis_cluster_is_a_setting() -> None:
    import redis.asyncio

    from services.common.connections import async_redis_client
    from services.common.feast_store import feast_environment

    cfg = RedisSettings(port=7001, cluster=True)
    assert redis_kwargs(cfg) == {"host": "127.0.0.1", "port": 7001}  # no database
    assert isinstance(async_redis_client(cfg), redis.asyncio.RedisCluster)  # connects lazily
    env = feast_environment(Settings(redis={"port": 7001, "cluster": True}))
    assert env["FRAUD_FEAST_REDIS"] == "127.0.0.1:7001"
    assert env["FRAUD_FEAST_REDIS_TYPE"] == "redis_cluster"
    with pytest.raises(ValidationError, match="FRAUD_REDIS__DB must be 0"):
        RedisSettings(db=2, cluster=True)


def test_the_bootstrap_admin_keys_secret_part_is_24_characters_or_more() -> None:
    """The rule counted the whole key, so fd_abc_ and a 19-character secret passed."""
    with pytest.raises(ValidationError, match="24"):
        Settings(api={"bootstrap_admin_key": "fd_abc_SHORTsecretVALUE123"})
    key = "fd_abc_" + "k" * 24
    assert Settings(api={"bootstrap_admin_key": key}).api.bootstrap_admin_key is not None
