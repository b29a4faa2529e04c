"""Settings of every process, read once from ``FRAUD_``-prefixed environment variables.

Nested groups use ``__``: ``FRAUD_KAFKA__BOOTSTRAP_SERVERS``. Every variable is listed in
``.env.example``. Defaults run everything on one machine. Knows nothing of how the values are
used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (services/ is installed editable, so this is the checkout)."""


_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "password", "admin"}
"""Values that are never a real secret (examples copied from documentation)."""


def _refuse_placeholder(value: SecretStr | None, variable: str) -> SecretStr | None:
    if value is not None and value.get_secret_value().lower() in _PLACEHOLDERS:
        raise ValueError(f"{variable} is empty or a placeholder; set the real secret")
    return value


class KafkaSettings(BaseModel):
    """The Kafka cluster the processes talk to, and the local broker ``fraud up`` runs.

    ``security_protocol`` follows Kafka's ``security.protocol``: PLAINTEXT (the local
    default), SASL_PLAINTEXT or SASL_SSL with a SCRAM mechanism (RFC 5802, RFC 7677) and a
    user of the cluster. ``ssl_cafile`` is a PEM bundle that verifies the brokers under
    SASL_SSL (default: the system's trust store).
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = Field(9093, ge=1, le=65535)
    heap_mb: int = Field(512, ge=128, description="JVM heap of the local broker, MiB")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    sasl_username: str | None = Field(None, min_length=1)
    sasl_password: SecretStr | None = None
    ssl_cafile: FilePath | None = None

    @field_validator("sasl_password")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value, "FRAUD_KAFKA__SASL_PASSWORD")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        sasl = self.security_protocol != "PLAINTEXT"
        has_credentials = self.sasl_username is not None or self.sasl_password is not None
        if sasl and (self.sasl_username is None or self.sasl_password is None):
            raise ValueError(
                f"FRAUD_KAFKA__SECURITY_PROTOCOL={self.security_protocol} needs "
                "FRAUD_KAFKA__SASL_USERNAME and FRAUD_KAFKA__SASL_PASSWORD"
            )
        if not sasl and has_credentials:
            raise ValueError(
                "FRAUD_KAFKA__SASL_USERNAME/SASL_PASSWORD are set but "
                "FRAUD_KAFKA__SECURITY_PROTOCOL is PLAINTEXT (set SASL_PLAINTEXT or SASL_SSL)"
            )
        if self.ssl_cafile is not None and self.security_protocol != "SASL_SSL":
            raise ValueError(
                "FRAUD_KAFKA__SSL_CAFILE is set but FRAUD_KAFKA__SECURITY_PROTOCOL is not SASL_SSL"
            )
        return self

    @property
    def broker_host(self) -> str:
        return self.bootstrap_servers.split(",")[0].rsplit(":", 1)[0]

    @property
    def broker_port(self) -> int:
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


MAX_RECORD_BYTES = 2 * 1024 * 1024
"""Largest record the transaction and dead-letter topics accept: above the 16 KiB event limit,
so that an oversized event reaches the scorer and is dead-lettered with a reason instead of
being refused by the broker unseen."""


class TopicSpec(BaseModel):
    """One topic: its name, partition count and retention (milliseconds, -1 keeps forever)."""

    name: str
    partitions: int
    retention_ms: int
    max_message_bytes: int | None = None


_DAY_MS = 24 * 3600 * 1000


class TopicsSettings(BaseModel):
    """Partitions and retention of the four topics of the event contracts (DESIGN.md, "Events")
    and of the dead-letter topics of the two that take outside input (``transactions.dlq``,
    ``labels.dlq``; both ``dlq_partitions`` and ``dlq_retention_ms``).

    The names are part of the contract; ``prefix`` (empty by default) namespaces them so that
    isolated runs (tests, benchmarks) can share a cluster.
    ``FRAUD_TOPICS__TRANSACTIONS_PARTITIONS=8`` changes a count. Partitions are the unit of
    scorer parallelism.
    """

    prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]*$")

    transactions_partitions: int = Field(4, ge=1, le=1024)
    transactions_retention_ms: int = Field(7 * _DAY_MS, ge=-1)
    dlq_partitions: int = Field(1, ge=1, le=1024)
    dlq_retention_ms: int = Field(28 * _DAY_MS, ge=-1)
    decisions_partitions: int = Field(4, ge=1, le=1024)
    decisions_retention_ms: int = Field(
        35 * _DAY_MS,
        ge=-1,
        description="the decisions topic's retention: at least the decision store's"
        " (FRAUD_STORE__RETENTION_DAYS), so that the store can be rebuilt from it",
    )
    labels_partitions: int = Field(4, ge=1, le=1024)
    labels_retention_ms: int = Field(-1, ge=-1)
    replication_factor: int = Field(
        1,
        ge=1,
        le=16,
        description="copies of each partition (3 on a cluster, `fraud up --cluster`)",
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        le=16,
        description="copies that must have a record before an acks=all write succeeds (2 of 3 on"
        " a cluster: one broker may be away without stopping writes or losing any)",
    )

    @model_validator(mode="after")
    def _replicas(self) -> TopicsSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                "FRAUD_TOPICS__MIN_INSYNC_REPLICAS may not exceed FRAUD_TOPICS__REPLICATION_FACTOR"
            )
        return self

    @property
    def transactions(self) -> TopicSpec:
        return TopicSpec(
            name=self.prefix + "transactions",
            partitions=self.transactions_partitions,
            retention_ms=self.transactions_retention_ms,
            max_message_bytes=MAX_RECORD_BYTES,
        )

    @property
    def transactions_dlq(self) -> TopicSpec:
        return TopicSpec(
            name=self.prefix + "transactions.dlq",
            partitions=self.dlq_partitions,
            retention_ms=self.dlq_retention_ms,
            max_message_bytes=MAX_RECORD_BYTES,
        )

    @property
    def labels_dlq(self) -> TopicSpec:
        """Labels that break the label contract, as ``transactions.dlq`` keeps transactions."""
        return TopicSpec(
            name=self.prefix + "labels.dlq",
            partitions=self.dlq_partitions,
            retention_ms=self.dlq_retention_ms,
            max_message_bytes=MAX_RECORD_BYTES,
        )

    @property
    def decisions(self) -> TopicSpec:
        return TopicSpec(
            name=self.prefix + "decisions",
            partitions=self.decisions_partitions,
            retention_ms=self.decisions_retention_ms,
        )

    @property
    def labels(self) -> TopicSpec:
        return TopicSpec(
            name=self.prefix + "labels",
            partitions=self.labels_partitions,
            retention_ms=self.labels_retention_ms,
        )

    def all(self) -> list[TopicSpec]:
        return [
            self.transactions,
            self.transactions_dlq,
            self.decisions,
            self.labels,
            self.labels_dlq,
        ]


class RedisSettings(BaseModel):
    """The Redis server holding the online features and the decision store.

    ``username`` and ``password`` name a Redis ACL user (Redis 6+, ``AUTH username
    password``); a password alone authenticates as the ``default`` user.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    username: str | None = Field(None, pattern=r"^[^\s]+$")
    password: SecretStr | None = None
    cluster: bool = False
    """A Redis Cluster: ``host:port`` is any of its nodes (the others are discovered), and
    ``db`` must be 0."""

    @field_validator("password")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value, "FRAUD_REDIS__PASSWORD")

    @model_validator(mode="after")
    def _password_with_user(self) -> RedisSettings:
        if self.username is not None and self.password is None:
            raise ValueError("FRAUD_REDIS__USERNAME is set without FRAUD_REDIS__PASSWORD")
        if self.cluster and self.db != 0:
            raise ValueError("FRAUD_REDIS__DB must be 0 with FRAUD_REDIS__CLUSTER=true")
        return self

    @property
    def url(self) -> str:
        """The server's address and database (never the credentials)."""
        return f"redis://{self.host}:{self.port}/{self.db}"


class ClusterSettings(BaseModel):
    """Ports of the local cluster topology (``fraud up --cluster``): Kafka nodes on
    ``kafka_base_port`` + 2, + 4, + 6 (controllers one above each), Redis nodes on
    ``redis_base_port`` + 1 to + 6 (their cluster bus ports + 101 to + 106)."""

    kafka_base_port: int = Field(29090, ge=1024, le=65000)
    redis_base_port: int = Field(27000, ge=1024, le=55000)


class PrometheusSettings(BaseModel):
    """The Prometheus server that scrapes every process."""

    host: str = "127.0.0.1"
    port: int = Field(9090, ge=1, le=65535)
    targets_dir: Path | None = Field(
        None,
        description="where processes register their /metrics for file-based discovery "
        "(default: var/prometheus/targets of this checkout)",
    )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


MIN_FEATURE_ROW_TTL_DAYS = 52
"""The longest history a feature row keeps, in days (``TERMINAL_HORIZON_MS`` of
``services/features/incremental.py``; a unit test holds the two equal)."""


class StoreSettings(BaseModel):
    """The decision store in Redis (``services/common/decision_store.py``)."""

    retention_days: float = Field(
        35.0,
        gt=0,
        le=3650,
        description="how long a decision, and its place in its card's index and in the review"
        " queue, stays in Redis: wall-clock days after it was stored (the transaction-id claims"
        " keep 35 days too); the decisions topic keeps at least as long",
    )

    feature_row_ttl_days: float = Field(
        60.0,
        ge=0,
        le=3650,
        description="a card's or a terminal's row of Feast's online store expires this many"
        " wall-clock days after its last write (0: never); at least 52, the longest history a"
        " row keeps (30-day windows, the 7-day label delay, 15 days for replays)",
    )

    @property
    def retention_ms(self) -> int:
        return max(int(self.retention_days * 24 * 3600 * 1000), 1)

    @property
    def feature_row_ttl_ms(self) -> int:
        """:attr:`feature_row_ttl_days` in milliseconds (0: rows never expire)."""
        return int(self.feature_row_ttl_days * 24 * 3600 * 1000)

    @model_validator(mode="after")
    def _rows_outlive_their_history(self) -> StoreSettings:
        if 0 < self.feature_row_ttl_days < MIN_FEATURE_ROW_TTL_DAYS:
            raise ValueError(
                f"FRAUD_STORE__FEATURE_ROW_TTL_DAYS ({self.feature_row_ttl_days:g}) must be 0"
                f" or at least {MIN_FEATURE_ROW_TTL_DAYS}: a row that expires sooner loses"
                " history its windows still count"
            )
        return self


class ScorerSettings(BaseModel):
    """The Faust scoring worker."""

    app_id: str = "fraud-scorer"
    batch_max: int = Field(500, ge=1, le=10_000, description="transactions per micro-batch")
    batch_within_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="wait for more transactions when a fetch brought fewer than batch_max,"
        " milliseconds (0: none; a batch takes everything fetched while the previous one was"
        " decided; p99 at 500 tx/s 11.2-11.8 ms with 0, 13.7-16.1 ms with 1, `fraud bench`,"
        " 2026-12-01)",
    )
    inference: Literal["trees", "xgboost-cpu", "xgboost-cuda"] = Field(
        "trees",
        description="what scores the micro-batches: the booster's trees compiled to numpy"
        " (faster up to 100 rows a batch on a 2-core EPYC, the scorer's usual batches are 1 to"
        " 20; README, 'CPU against GPU'), XGBoost on one CPU thread (faster from 150 rows"
        " there, from 100 on an H200's 16-core host), or XGBoost on the GPU"
        " (needs an XGBoost built with CUDA and a usable GPU, or the worker does not start;"
        " on an H200 7.7 to 13.8 times slower than the numpy trees at 1 and 10 rows a batch,"
        " faster at 1,000 rows (100 and 1,000 measured), where XGBoost on 16 CPU threads was"
        " faster still: no default picks it). One per process: the backends differ on a few scores"
        " in the last float32 place (5 of 125,504 handbook rows, by 2.3e-10; 1.2e-7 on the"
        " GPU)",
    )
    metrics_port: int = Field(
        8001, ge=0, le=65535, description="/metrics port; 0 picks a free one (for replicas)"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="the address /metrics listens on; 0.0.0.0 where Prometheus scrapes from"
        " another host or container (docker-compose.yml)",
    )
    loglevel: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "warning", description="the workers' log level"
    )

    @field_validator("loglevel", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="the worker's event loop; uvloop's transports are written in C (the scorer's"
        " CPU per transaction, `fraud bench`), asyncio is the standard library's",
    )
    broker_wait_s: float = Field(
        300.0,
        ge=10.0,
        le=3600.0,
        description="how long the scoring worker's decisions wait for a broker that is away"
        " (a partition without a leader) before their delivery fails and the worker goes"
        " back to the offsets delivered before it and decides from there again with a new"
        " producer (fraud_scorer_delivery_rewinds_total); aiokafka's request_timeout_ms,"
        " whose default of 40 s failed the decisions of a 25 s outage followed by a slow"
        " broker restart (`fraud chaos`, producer-outage)",
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="a replica silent this long (crashed) loses its partitions to the others;"
        " heartbeats go every third of it",
    )


class RecorderSettings(BaseModel):
    """The recording worker (``fraud record``): ``decisions`` and ``labels`` into the
    terminals' history and the decision store, in consumer groups named after the scorer's
    ``app_id`` (``<app_id>-terminals``, ``<app_id>-store``)."""

    metrics_port: int = Field(
        8003, ge=0, le=65535, description="/metrics port; 0 picks a free one (for replicas)"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="the address /metrics listens on; 0.0.0.0 where Prometheus scrapes from"
        " another host or container (docker-compose.yml)",
    )
    dependency_deadline_s: float = Field(
        900.0,
        ge=5.0,
        le=86_400.0,
        description="the terminals' writer and the decision store wait this long for Redis"
        " (their batch uncommitted, retried with backoff), then the worker stops with an error"
        " for its supervisor to restart",
    )
    nice: int = Field(
        0,
        ge=0,
        le=19,
        description="CPU priority the recording worker lowers itself by at start (Unix nice"
        " increment; 0: none). Off the decision's latency path, it then yields to the scoring"
        " worker on a shared machine (README, Benchmark), and lags when the machine is full:"
        " for live traffic, whose labels come days later; not for replays faster than real"
        " time, where a late label changes terminal risk",
    )


class ApiSettings(BaseModel):
    """The admin API (``fraud api``)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="the largest request body the API reads (bytes); larger ones get 413",
    )
    cookie_secure: bool | None = Field(
        None,
        description="mark the console's cookies Secure (sent over HTTPS only): true behind a"
        " TLS proxy, whose X-Forwarded-Proto uvicorn trusts from 127.0.0.1 only; unset: when"
        " the request came over https",
    )
    bootstrap_admin_key: SecretStr | None = Field(
        None,
        description="if set, an admin key with this value is ensured at start (for automation);"
        " otherwise create keys with `fraud api-key create`",
    )

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            parts = secret.split("_")
            if len(parts) == 3 and (
                len(parts[2]) < 24
                or parts[2].lower() in {"changeme", "change-me", "secret", "admin"}
            ):  # the secret part: "fd_abc_" and a short secret are not 24 random characters
                raise ValueError(
                    "FRAUD_API__BOOTSTRAP_ADMIN_KEY's <secret> (after fd_<id>_) must be 24+"
                    " random characters"
                )
            if len(parts) != 3 or parts[0] != "fd" or not all(parts[1:]):
                raise ValueError(
                    "FRAUD_API__BOOTSTRAP_ADMIN_KEY must read fd_<id>_<secret> (no other '_'),"
                    " e.g. fd_$(openssl rand -hex 6)_$(openssl rand -hex 24)"
                )
        return value


class Settings(BaseSettings):
    """All settings. Build once in an entry point and pass down.

    Raises:
        pydantic.ValidationError: a variable has a bad value; the message names it.
    """

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # an input may be a secret
    )

    var_dir: Path = PROJECT_ROOT / "var"
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data" / "fraud-handbook"
    service_timeout_s: float = Field(
        90.0, gt=0, description="how long `fraud up` waits per service"
    )
    training_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where XGBoost trains when no --device is given (`fraud train`, `fraud"
        " evaluate`, `fraud demo`, and the model `fraud bench` and `fraud chaos` train when"
        " none is active): auto (CUDA where XGBoost can train there: fits 1.7-1.9 times"
        " faster on an H200 than on its 16 CPU cores, and a model of the same quality but not"
        " the same model; README, 'CPU against GPU'), cpu (reproduces the README's figures"
        " anywhere) or cuda (stops, saying why, where it cannot be used)",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicsSettings = Field(default_factory=TopicsSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    recorder: RecorderSettings = Field(default_factory=RecorderSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @model_validator(mode="after")
    def _topic_outlives_store(self) -> Settings:
        kept = self.topics.decisions_retention_ms
        if kept != -1 and kept < self.store.retention_ms:
            raise ValueError(
                f"FRAUD_TOPICS__DECISIONS_RETENTION_MS ({kept / _DAY_MS:g} days) is shorter than"
                f" FRAUD_STORE__RETENTION_DAYS ({self.store.retention_days:g}): the decision"
                " store could not be rebuilt from the topic"
            )
        return self

    @field_validator("var_dir", "data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def targets_dir(self) -> Path:
        """Prometheus's file-based discovery folder."""
        return self.prometheus.targets_dir or self.var_dir / "prometheus" / "targets"

    @property
    def models_dir(self) -> Path:
        """The model registry's root."""
        return self.var_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"
