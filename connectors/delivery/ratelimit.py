"""Token buckets for partner quotas, per configuration (or per any key, e.g. an account's logins).

A bucket holds up to `capacity` tokens and gains `rate` tokens per second. `take()` takes one token and answers 0.0,
or answers how many seconds until one is available (taking nothing). With REDIS_URL set the bucket lives in Redis
(one atomic Lua script per take), so every worker process on every machine shares the partner's quota; without it
each process has its own bucket (the embedded default runs one worker).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

KEY_PREFIX = "dap:ratelimit:"

# KEYS[1] bucket; ARGV: rate (tokens/s), capacity, now (s), ttl (s). Returns "0" when a token was taken, else the
# seconds to wait as a string (Lua numbers would be truncated to integers on the way out).
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = capacity; at = now end
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate); at = now end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return tostring(wait)
"""


@dataclass(frozen=True)
class Quota:
    """`count` requests per `per_seconds`, with bursts of up to `burst` requests (default: a tenth of the count)."""

    count: int
    per_seconds: float = 60.0
    burst: int | None = None

    @property
    def rate(self) -> float:
        return self.count / self.per_seconds

    @property
    def capacity(self) -> int:
        return max(1, self.burst if self.burst is not None else self.count // 10)


class _LocalBuckets:
    def __init__(self):
        self.lock = threading.Lock()
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, quota: Quota, now: float) -> float:
        with self.lock:
            tokens, at = self.state.get(key, (float(quota.capacity), now))
            if now > at:
                tokens = min(float(quota.capacity), tokens + (now - at) * quota.rate)
                at = now
            if tokens >= 1:
                self.state[key] = (tokens - 1, at)
                return 0.0
            self.state[key] = (tokens, at)
            return (1 - tokens) / quota.rate


_local = _LocalBuckets()


@cache
def _redis(url: str):
    import redis

    client = redis.Redis.from_url(url)
    return client, client.register_script(_TAKE)


def take(key: str, quota: Quota) -> float:
    """Take a token from the bucket `key`: 0.0 when taken, else the seconds until one will be there."""
    now = time.time()
    if settings.REDIS_URL:
        _client, script = _redis(settings.REDIS_URL)
        ttl = int(quota.capacity / quota.rate) + 60
        return float(script(keys=[KEY_PREFIX + key], args=[quota.rate, quota.capacity, now, ttl]))
    return _local.take(key, quota, time.monotonic())


def acquire(key: str, quota: Quota, *, max_wait: float) -> float:
    """Wait for a token for up to `max_wait` seconds. Returns 0.0 once one is taken, or the seconds still to wait
    when that is longer than `max_wait` (nothing taken: the caller defers the work)."""
    deadline = time.monotonic() + max_wait
    while True:
        wait = take(key, quota)
        if wait <= 0:
            return 0.0
        if time.monotonic() + wait > deadline:
            return wait
        time.sleep(wait)


def reset(key: str) -> None:
    """Forget a bucket (tests; a configuration whose quota changed)."""
    if settings.REDIS_URL:
        client, _script = _redis(settings.REDIS_URL)
        client.delete(KEY_PREFIX + key)
    with _local.lock:
        _local.state.pop(key, None)
