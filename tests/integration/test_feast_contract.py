"""The scorer's entity state is Feast's online store: what one writes, the other reads.

Expected bytes come from Feast's own code (``serialize_entity_key``, its ``Value`` protobuf,
``_mmh3``, ``RedisOnlineStore``); expected features from the scorer's own decisions. Runs a
throw-away ``redis-server`` and a private Feast registry; needs the handbook data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import redis

from services.common import feast_layout as fl
from services.common.connections import async_redis_client
from services.common.events import parse_transaction
from services.common.feast_store import FEATURE_SERVICE, open_store
from services.common.handbook import load_transactions, to_events
from services.common.settings import Settings
from services.features.definitions import ALL_FEATURES
from services.features.incremental import CustomerHistory
from services.features.online import request_row
from services.scorer.backfill import backfill
from services.scorer.feature_state import (
    CARD_FIELDS,
    ROW_TTL_MS,
    RedisFeatureState,
    customer_key,
    decode_customer,
    terminal_key,
)
from services.scorer.terminal_state import TERMINAL_FIELDS, Observed, TerminalState
from tools.bench.private_redis import private_redis

WEEK = dt.date(2018, 8, 8)
CHECKED = 1_000


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with private_redis() as port:
        yield Settings(var_dir=tmp_path_factory.mktemp("feast-var"), redis={"port": port})


def _feast_value(**kwargs: object) -> bytes:
    from feast.protos.feast.types.Value_pb2 import DoubleList, StringList, Value

    if "doubles" in kwargs:
        return bytes(Value(double_list_val=DoubleList(val=kwargs["doubles"])).SerializeToString())
    return bytes(Value(string_list_val=StringList(val=kwargs["strings"])).SerializeToString())


@pytest.mark.parametrize(
    "values",
    [[], [0.0], [1533686102000.0, 1533686103123.0, 2.0**53], list(np.linspace(-5, 5, 300))],
)
def test_float64_arrays_are_byte_identical_to_feasts(values: list[float]) -> None:
    assert fl.encode_doubles(values) == _feast_value(doubles=values)
    assert fl.decode_doubles(_feast_value(doubles=values)).tolist() == values


@pytest.mark.parametrize(
    "values", [[], [""], ["tx-1", "12345678"], ["é" * 64, "x" * 200], [str(i) for i in range(500)]]
)
def test_string_arrays_are_byte_identical_to_feasts(values: list[str]) -> None:
    assert fl.encode_strings(values) == _feast_value(strings=values)
    assert fl.decode_strings(_feast_value(strings=values)) == values


@pytest.mark.parametrize("value", ["c-17", "", "é" * 40, "9" * 300])
def test_keys_fields_and_timestamps_are_feasts(value: str) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    proto = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=value)])
    want = serialize_entity_key(proto, entity_key_serialization_version=3) + b"fraud_detection"
    assert fl.entity_key("customer_id", value) == want
    assert fl.entity_value(want) == value
    assert want.startswith(fl.entity_key_prefix("customer_id"))
    assert fl.field("card_history", "card_event_times_ms") == _mmh3(
        "card_history:card_event_times_ms"
    )
    for ms in (0, 1533686102000, 1533686102123, 999):
        stamp = Timestamp()
        stamp.FromDatetime(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))
        assert fl.encode_timestamp(ms) == stamp.SerializeToString()


def _week_transactions(settings: Settings, n: int) -> tuple[pd.DataFrame, list]:  # type: ignore[type-arg]
    import orjson

    frame = load_transactions(settings.data_dir, None, WEEK + dt.timedelta(days=1))
    events = to_events(frame[pd.to_datetime(frame["TX_DATETIME"]) >= pd.Timestamp(WEEK)])
    txs = [parse_transaction(orjson.dumps(row)) for row in events.head(n).to_dict("records")]
    return frame, txs


def test_the_on_demand_view_gives_the_features_the_scorer_decided_with(
    store_settings: Settings,
) -> None:
    """Backfill as of 2018-08-08, then the week's first transactions through the scorer's
    state and the terminals' writer in micro-batches; then one ``get_online_features`` call
    of the ``fraud_model`` feature service with each transaction as request data."""
    frame, txs = _week_transactions(store_settings, 3_000)
    sync = redis.Redis(port=store_settings.redis.port)
    backfill(sync, frame, WEEK)
    rows = [customer_key(txs[0].customer_id), terminal_key(txs[0].terminal_id)]
    assert all(0 < sync.pttl(row) <= ROW_TTL_MS for row in rows)  # backfilled rows expire too

    async def score() -> dict[str, np.ndarray]:
        client = async_redis_client(store_settings.redis)
        state, terminals = RedisFeatureState(client, defer_writes=True), TerminalState(client)
        out: dict[str, np.ndarray] = {}
        for at in range(0, len(txs), 37):
            batch = txs[at : at + 37]
            values = (await state.features(batch)).values
            out.update(zip((tx.transaction_id for tx in batch), values, strict=True))
            await terminals.apply(
                [Observed(t.transaction_id, t.terminal_id, t.time_ms) for t in batch]
            )
        await state.flush()
        await client.aclose()
        return out

    decided = asyncio.run(score())
    store = open_store(store_settings)
    checked = txs[:: len(txs) // CHECKED][:CHECKED]
    rows = [
        request_row(tx.customer_id, tx.terminal_id, tx.transaction_id, tx.time_ms, tx.amount)
        for tx in checked
    ]
    service = store.get_feature_service(FEATURE_SERVICE)
    online = store.get_online_features(features=service, entity_rows=rows).to_dict()
    got = np.column_stack([online[name] for name in ALL_FEATURES])
    want = np.vstack([decided[tx.transaction_id] for tx in checked])
    assert len(checked) == CHECKED
    assert (want[:, ALL_FEATURES.index("CUSTOMER_ID_NB_TX_30DAY_WINDOW")] > 1).mean() > 0.9
    assert (want[:, ALL_FEATURES.index("TERMINAL_ID_NB_TX_30DAY_WINDOW")] > 1).mean() > 0.9
    np.testing.assert_array_equal(got, want)

    # what the scorer wrote, Feast reads back identical, card and terminal alike
    tx = checked[-1]
    card = store.get_online_features(
        features=[f"{fl.CARD_VIEW}:{n}" for n in fl.CARD_FEATURES],
        entity_rows=[{"customer_id": tx.customer_id}],
    ).to_dict()
    mine = decode_customer(sync.hmget(customer_key(tx.customer_id), CARD_FIELDS))
    assert card[fl.CARD_IDS][0] == mine.transaction_ids
    assert card[fl.CARD_TIMES][0] == mine.times_ms.astype(float).tolist()
    assert card[fl.CARD_CENTS][0] == mine.cents.astype(float).tolist()
    site = store.get_online_features(
        features=[f"{fl.TERMINAL_VIEW}:{n}" for n in fl.TERMINAL_FEATURES],
        entity_rows=[{"terminal_id": tx.terminal_id}],
    ).to_dict()
    raw = sync.hmget(terminal_key(tx.terminal_id), TERMINAL_FIELDS)
    assert site[fl.TERMINAL_KEYS][0] == fl.decode_doubles(raw[2]).tolist() != []
    assert site[fl.TERMINAL_TIMES][0] == fl.decode_doubles(raw[0]).tolist()


def test_a_feast_push_is_read_by_the_scorer_identically(store_settings: Settings) -> None:
    """A card history pushed through Feast (``FeatureStore.push``) is the history the scorer
    reads: same bytes as the scorer's own encoding, same features."""
    store = open_store(store_settings)
    history = CustomerHistory(
        times_ms=np.array([1533686102000, 1533772502000, 1533772503500], dtype=np.int64),
        cents=np.array([1250, 399, 100000], dtype=np.int64),
        transaction_ids=["p1", "p2", "p3"],
        large=np.array([0, 0, 1], dtype=np.int64),
    )
    pushed = pd.DataFrame(
        {
            "customer_id": ["pushed-card"],
            "event_timestamp": [pd.Timestamp(1533772503500, unit="ms", tz="UTC")],
            fl.CARD_TIMES: [history.times_ms.astype(float).tolist()],
            fl.CARD_CENTS: [history.cents.astype(float).tolist()],
            fl.CARD_LARGE: [history.large.astype(float).tolist()],
            fl.CARD_IDS: [history.transaction_ids],
        }
    )
    store.push("card_history_push", pushed)
    sync = redis.Redis(port=store_settings.redis.port)
    stored = sync.hgetall(customer_key("pushed-card"))
    from services.scorer.feature_state import encode_customer

    assert stored == encode_customer(history)
    assert 0 < sync.pttl(customer_key("pushed-card")) <= ROW_TTL_MS  # Feast's key_ttl_seconds
    read = decode_customer(sync.hmget(customer_key("pushed-card"), CARD_FIELDS))
    assert read.transaction_ids == history.transaction_ids
    np.testing.assert_array_equal(read.times_ms, history.times_ms)
    np.testing.assert_array_equal(read.cents, history.cents)
    np.testing.assert_array_equal(read.large, history.large)


def test_no_private_feature_keys_remain(store_settings: Settings) -> None:
    sync = redis.Redis(port=store_settings.redis.port)
    assert sync.dbsize() > 0
    assert not list(sync.scan_iter(match="fs:*"))
    prefixes = (fl.entity_key_prefix("customer_id"), fl.entity_key_prefix("terminal_id"))
    for key in sync.scan_iter(count=1000):
        assert key.startswith(b"txid:") or key.startswith(prefixes), key
