"""Console sessions: an API key signs in once; the browser then holds an opaque session token.

The token travels only in an HttpOnly, SameSite=Strict cookie scoped to ``/console``. Redis
keeps its SHA-256 digest (``console:session:<digest>``), never the token or the API key, with
the key's id, a fingerprint of its digest and a CSRF token, for :data:`SESSION_TTL_S`. Each
request looks the key up again, so a revoked key, a key given a new secret under its id (a
rotated ``FRAUD_API__BOOTSTRAP_ADMIN_KEY``) or a changed role takes effect at once. Forms
carry the session's CSRF token in a hidden field (the synchronizer token pattern, OWASP's CSRF
cheat sheet); the sign-in form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from services.api.keys import KEYS_HASH, Principal, Role, authenticate

SESSION_COOKIE = "fd_console"
LOGIN_COOKIE = "fd_console_login"
COOKIE_PATH = "/console"
SESSION_TTL_S = 8 * 3600
"""A session lasts a working day from sign-in (seconds)."""


@dataclass(frozen=True)
class Session:
    """A signed-in console user: the API key's principal and the session's CSRF token."""

    principal: Principal
    csrf: str


def _fingerprint(stored: dict[str, Any]) -> str | None:
    """What tells a key's secret from the next one under the same id: the first 16 hex digits
    of its stored digest (never the key itself)."""
    digest = stored.get("sha256")
    return digest[:16] if isinstance(digest, str) else None


def _session_key(token: str) -> str:
    return "console:session:" + hashlib.sha256(token.encode()).hexdigest()


async def open_session(client: Any, api_key: str) -> tuple[str, Session] | None:
    """Check an API key and open a session for it (``redis.asyncio`` client).

    Returns:
        The session token (for the cookie) and the session; None when the key is not valid.
    """
    principal = await authenticate(client, api_key)
    if principal is None:
        return None
    stored = json.loads(await client.hget(KEYS_HASH, principal.key_id) or b"{}")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    record = {"key_id": principal.key_id, "key": _fingerprint(stored), "csrf": csrf}
    await client.set(_session_key(token), json.dumps(record), ex=SESSION_TTL_S)
    return token, Session(principal, csrf)


async def read_session(client: Any, token: str | None) -> Session | None:
    """The session of a cookie's token; None when absent, expired, or its key was revoked."""
    if not token or len(token) > 128:
        return None
    raw = await client.get(_session_key(token))
    if raw is None:
        return None
    record = json.loads(raw)
    key = await client.hget(KEYS_HASH, record["key_id"])
    stored = json.loads(key) if key is not None else None
    if stored is None or record.get("key") != _fingerprint(stored):
        # revoked since sign-in, or given a new secret (a rotated bootstrap key keeps its id)
        await client.delete(_session_key(token))
        return None
    role: Role = stored["role"]
    return Session(Principal(record["key_id"], stored["name"], role), record["csrf"])


async def close_session(client: Any, token: str | None) -> None:
    """Sign out: forget the session."""
    if token:
        await client.delete(_session_key(token))


def same_token(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens; False when either is missing."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def new_login_token() -> str:
    """The sign-in form's double-submit token (cookie and hidden field)."""
    return secrets.token_urlsafe(32)
