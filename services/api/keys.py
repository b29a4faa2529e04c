"""API keys with roles, stored hashed in Redis.

A key reads ``fd_<key id>_<secret>``: the id finds the record, the secret is checked against
its SHA-256 digest with a constant-time comparison. Keys are 256-bit random tokens, so a plain
digest is enough (no password-hashing work factor is needed). The plain key is shown once, at
creation, and never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from services.common.events import id_problem, mask_card_numbers

Role = Literal["viewer", "analyst", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
KEYS_HASH = "api:keys"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its name and role."""

    key_id: str
    name: str
    role: Role

    def can(self, needed: Role) -> bool:
        """True when this role includes ``needed`` (admin > analyst > viewer)."""
        return RANK[self.role] >= RANK[needed]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(key: str) -> tuple[str, str] | None:
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "fd" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_key(client: Any, name: str, role: Role, secret: str | None = None) -> str:
    """Store a new key (synchronous Redis client) and return it in full, once.

    Args:
        secret: the whole key to register (``fd_<id>_<secret>``) instead of a random one.

    Raises:
        ValueError: unknown role, ``secret`` is not of the key form, or ``name`` breaks the
            id rules (:func:`services.common.events.id_problem`: 1-64 printable characters,
            no edge whitespace, never a card number; it is shown as the actor of changes).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if (problem := id_problem(name)) is not None:
        raise ValueError(f"the key's name {mask_card_numbers(name)!r} {problem}")
    if secret is not None:
        split = _split(secret)
        if split is None:
            raise ValueError("a key reads fd_<id>_<secret>")
        key_id, token = split
    else:
        key_id, token = secrets.token_hex(6), secrets.token_urlsafe(32).replace("_", "-")
    record = {
        "name": name,
        "role": role,
        "sha256": _digest(token),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    client.hset(KEYS_HASH, key_id, json.dumps(record))
    return f"fd_{key_id}_{token}"


def list_keys(client: Any) -> list[dict[str, str]]:
    """Every key's id, name, role and creation time (never the digest)."""
    out = []
    for key_id, raw in sorted(client.hgetall(KEYS_HASH).items()):
        record = json.loads(raw)
        out.append(
            {
                "key_id": key_id.decode() if isinstance(key_id, bytes) else key_id,
                "name": record["name"],
                "role": record["role"],
                "created_at": record["created_at"],
            }
        )
    return out


def revoke_key(client: Any, key_id: str) -> bool:
    """Delete a key; True when it existed."""
    return bool(client.hdel(KEYS_HASH, key_id))


async def authenticate(client: Any, key: str) -> Principal | None:
    """The principal of a presented key (``redis.asyncio`` client), or None."""
    split = _split(key)
    if split is None:
        return None
    key_id, token = split
    raw = await client.hget(KEYS_HASH, key_id)
    if raw is None:
        return None
    record = json.loads(raw)
    if not hmac.compare_digest(record["sha256"], _digest(token)):
        return None
    return Principal(key_id=key_id, name=record["name"], role=record["role"])
