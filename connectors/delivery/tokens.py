"""A cache of partner access tokens (Google OAuth2 access tokens, Xandr session tokens…), shared by worker processes.

Tokens are secrets: in Redis (when REDIS_URL is set) they are stored encrypted with the platform's Fernet keys and
expire with the token; without Redis they stay in the process. The cache key is derived from the credentials that
produced the token (a hash, never the credentials), so changing credentials never reuses an old token.
"""

from __future__ import annotations

import hashlib
import threading
import time
from functools import cache

from cryptography.fernet import InvalidToken
from django.conf import settings

from connectors import crypto

KEY_PREFIX = "dap:token:"
_local: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


def cache_key(*parts: object) -> str:
    """A stable key for a token from what produced it (partner, credentials, scope…), hashed."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:40]


@cache
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def get(key: str) -> str | None:
    """The cached token, or None when absent or expired."""
    now = time.time()
    with _lock:
        cached = _local.get(key)
    if cached and cached[1] > now:
        return cached[0]
    if settings.REDIS_URL:
        raw = _redis(settings.REDIS_URL).get(KEY_PREFIX + key)
        if raw:
            try:
                token, expires = crypto.decrypt_text(raw.decode()).rsplit("\n", 1)
            except (InvalidToken, ValueError):
                return None
            if float(expires) > now:
                with _lock:
                    _local[key] = (token, float(expires))
                return token
    return None


def put(key: str, token: str, ttl_seconds: float) -> None:
    """Cache `token` for `ttl_seconds` (give a margin before the partner's own expiry)."""
    if ttl_seconds <= 0:
        return
    expires = time.time() + ttl_seconds
    with _lock:
        _local[key] = (token, expires)
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).set(
            KEY_PREFIX + key, crypto.encrypt_text(f"{token}\n{expires}"), ex=max(1, int(ttl_seconds))
        )


def forget(key: str) -> None:
    """Drop a token the partner refused (it is fetched again on the next call)."""
    with _lock:
        _local.pop(key, None)
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).delete(KEY_PREFIX + key)
