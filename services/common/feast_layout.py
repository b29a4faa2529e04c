"""Feast's Redis online-store layout, for the entity state the scorer reads and writes.

Feast (0.67, ``RedisOnlineStore``) keeps one Redis hash per entity: the key is the entity key
serialized by ``serialize_entity_key`` (version 3) followed by the project name; each feature
is a field named by the 4-byte murmur3 hash of ``"<view>:<feature>"`` whose value is a
serialized ``feast.types.Value``; ``_ts:<view>`` holds the row's event time as a serialized
``google.protobuf.Timestamp``. This module writes and reads exactly those bytes, so any Feast
client reads what the scorer wrote and the scorer reads what Feast wrote (a push);
``tests/integration/test_feast_contract.py`` proves it byte for byte against Feast's own code.

Float64 arrays are encoded with numpy (a packed ``repeated double`` is the little-endian
doubles after a length), which is what makes a whole card history cheap to read and write;
string arrays are parsed and serialized by protobuf with a message of the same wire format
as Feast's ``StringList``. Knows nothing of Kafka or of features.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

import mmh3
import numpy as np
import numpy.typing as npt

from services.features.online import (
    CARD_CENTS,
    CARD_IDS,
    CARD_LARGE,
    CARD_TIMES,
    TERMINAL_FRAUDS,
    TERMINAL_KEYS,
    TERMINAL_TIMES,
)

PROJECT = "fraud_detection"
"""The Feast project (``feature_store/feature_store.yaml``); the suffix of every key."""

CUSTOMER_JOIN_KEY = "customer_id"
TERMINAL_JOIN_KEY = "terminal_id"

CARD_VIEW = "card_history"
"""Each card's recent transactions, in arrival order (written by its partition's owner)."""
CARD_FEATURES: tuple[str, ...] = (CARD_TIMES, CARD_CENTS, CARD_LARGE, CARD_IDS)

TERMINAL_VIEW = "terminal_history"
"""Each terminal's recent transactions and the fraud labels received (one writer)."""
TERMINAL_FEATURES: tuple[str, ...] = (TERMINAL_TIMES, TERMINAL_FRAUDS, TERMINAL_KEYS)

_STRING = 2  # feast.value_type.ValueType.STRING
_DOUBLE_LIST_TAG = b"\x7a"  # Value.double_list_val: field 15, length-delimited
_PACKED_TAG = b"\x0a"  # DoubleList.val: field 1, packed
_STRING_LIST_TAG = b"\x62"  # Value.string_list_val: field 12, length-delimited


def entity_key(join_key: str, value: str) -> bytes:
    """The Redis key of one entity: ``serialize_entity_key`` (version 3) of a single string
    join key, then the project name."""
    name, data = join_key.encode(), value.encode()
    return b"".join(
        (
            struct.pack("<III", 1, _STRING, len(name)),
            name,
            struct.pack("<II", _STRING, len(data)),
            data,
            PROJECT.encode(),
        )
    )


def entity_key_prefix(join_key: str) -> bytes:
    """What every key of ``join_key``'s entities starts with (for ``SCAN MATCH``)."""
    name = join_key.encode()
    return struct.pack("<III", 1, _STRING, len(name)) + name


def entity_value(key: bytes) -> str:
    """The join key's value inside an :func:`entity_key`.

    Raises:
        ValueError: the key is not a single-string entity key of this project.
    """
    if not key.endswith(PROJECT.encode()) or len(key) < 12:
        raise ValueError("not an entity key of this project")
    (name_length,) = struct.unpack_from("<I", key, 8)
    at = 12 + name_length
    _, length = struct.unpack_from("<II", key, at)
    return key[at + 8 : at + 8 + length].decode()


@cache
def field(view: str, feature: str) -> bytes:
    """The hash field of a feature: murmur3 (32 bits, little-endian) of ``view:feature``."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def timestamp_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(raw: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def encode_doubles(values: npt.ArrayLike) -> bytes:
    """A serialized ``Value`` with ``double_list_val`` (Feast type ``Array(Float64)``)."""
    data = np.ascontiguousarray(values, dtype="<f8").tobytes()
    inner = _PACKED_TAG + _varint(len(data)) + data if data else b""
    return _DOUBLE_LIST_TAG + _varint(len(inner)) + inner


def decode_doubles(raw: bytes | None) -> npt.NDArray[np.float64]:
    """Inverse of :func:`encode_doubles`; an empty array for a missing field.

    Raises:
        ValueError: the bytes are not a packed ``double_list_val``.
    """
    if raw is None:
        return np.zeros(0)
    if raw[:1] != _DOUBLE_LIST_TAG:
        raise ValueError("not a Feast Array(Float64) value")
    length, at = _read_varint(raw, 1)
    if length == 0:
        return np.zeros(0)
    if raw[at : at + 1] != _PACKED_TAG:
        raise ValueError("not a packed double list")
    size, at = _read_varint(raw, at + 1)
    return np.frombuffer(raw, "<f8", size // 8, at).astype(np.float64)


@lru_cache(maxsize=1)
def _string_list() -> Any:
    """A message class wire-compatible with Feast's ``StringList`` (``repeated string val =
    1``), from a private descriptor pool: parsing and serializing run in protobuf's C code
    without importing Feast (seconds, and hundreds of thousands of objects) into the scorer."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="fraud_layout.proto", package="fraud_layout")
    message = proto.message_type.add(name="StringList")
    message.field.add(
        name="val",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fraud_layout.StringList"))


def encode_strings(values: Sequence[str]) -> bytes:
    """A serialized ``Value`` with ``string_list_val`` (Feast type ``Array(String)``)."""
    inner: bytes = _string_list()(val=values).SerializeToString()
    return _STRING_LIST_TAG + _varint(len(inner)) + inner


def decode_strings(raw: bytes | None) -> list[str]:
    """Inverse of :func:`encode_strings`; an empty list for a missing field.

    Raises:
        ValueError: the bytes are not a ``string_list_val``.
    """
    if raw is None:
        return []
    if raw[:1] != _STRING_LIST_TAG:
        raise ValueError("not a Feast Array(String) value")
    length, at = _read_varint(raw, 1)
    message = _string_list()()
    message.ParseFromString(raw[at : at + length])
    return list(message.val)


def encode_timestamp(epoch_ms: int) -> bytes:
    """A serialized ``google.protobuf.Timestamp`` (Feast's ``_ts:<view>`` field)."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    out = b"\x08" + _varint(seconds) if seconds else b""
    return out + (b"\x10" + _varint(millis * 1_000_000) if millis else b"")


def card_fields() -> list[bytes]:
    """HMGET fields of a card's state, :data:`CARD_FEATURES` order."""
    return [field(CARD_VIEW, name) for name in CARD_FEATURES]


def terminal_fields() -> list[bytes]:
    """HMGET fields of a terminal's state, :data:`TERMINAL_FEATURES` order."""
    return [field(TERMINAL_VIEW, name) for name in TERMINAL_FEATURES]


def row(view: str, values: dict[str, bytes], newest_ms: int) -> dict[bytes, bytes]:
    """The HSET mapping of one entity's row of ``view``: its encoded features by field, and
    the row's timestamp (the newest event, epoch ms)."""
    mapping: dict[bytes, bytes] = {field(view, k): v for k, v in values.items()}
    mapping[timestamp_field(view)] = encode_timestamp(newest_ms)
    return mapping


__all__ = [
    "CARD_CENTS",
    "CARD_FEATURES",
    "CARD_IDS",
    "CARD_LARGE",
    "CARD_TIMES",
    "CARD_VIEW",
    "CUSTOMER_JOIN_KEY",
    "PROJECT",
    "TERMINAL_FEATURES",
    "TERMINAL_FRAUDS",
    "TERMINAL_JOIN_KEY",
    "TERMINAL_KEYS",
    "TERMINAL_TIMES",
    "TERMINAL_VIEW",
    "card_fields",
    "decode_doubles",
    "decode_strings",
    "encode_doubles",
    "encode_strings",
    "encode_timestamp",
    "entity_key",
    "entity_key_prefix",
    "entity_value",
    "field",
    "row",
    "terminal_fields",
]
