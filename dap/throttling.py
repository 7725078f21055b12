"""API rate limits: DRF throttles counting in Django's cache.

With `REDIS_URL` set the cache is Redis (settings.CACHES), so every web process on every machine shares one counter
per user; without it each process counts on its own (local memory). Counting is a fixed window per user: the window's
key is created with `cache.add` and bumped with `cache.incr`, both atomic in Redis and in the local-memory cache, so
concurrent requests cannot lose counts (DRF's default throttles read, append and write back a list instead).
A refused request answers 429 with `Retry-After` (seconds to the end of the window) before the view runs: it writes
nothing.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

KEY_PREFIX = "throttle"

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """ "120/min" -> (120, 60). Empty or None: no limit. The period is s, sec, m, min, h, hour, d or day."""
    if not rate:
        return None
    count, _, period = str(rate).partition("/")
    try:
        number = int(count)
        seconds = _PERIODS[period.strip().lower()[:1]]
    except (ValueError, KeyError):
        raise ValueError(f'A rate is "<number>/<s|min|hour|day>", not {rate!r}') from None
    if number < 1:
        raise ValueError(f"A rate allows at least 1 request, not {rate!r}")
    return number, seconds


class FixedWindowUserThrottle(BaseThrottle):
    """At most `rate` requests per authenticated user (anonymous users: per client address) and window.

    Subclasses name their `scope` and read their rate in `get_rate()`."""

    scope = ""

    def get_rate(self) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def _ident(self, request) -> str:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"addr:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        parsed = parse_rate(self.get_rate())
        if parsed is None:
            return True
        limit, period = parsed
        now = time.time()
        window = int(now // period)
        key = f"{KEY_PREFIX}:{self.scope}:{self._ident(request)}:{period}:{window}"
        cache.add(key, 0, timeout=period + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this request opens the window again
            cache.add(key, 1, timeout=period + 5)
            count = 1
        self._wait = (window + 1) * period - now
        return count <= limit

    def wait(self) -> float:
        return max(1, math.ceil(getattr(self, "_wait", 1)))


class ProfileIngestThrottle(FixedWindowUserThrottle):
    """The profile ingestion API (POST /api/v1/profiles/bulk/): `DAP_PROFILE_INGEST_RATE` calls per user."""

    scope = "profile_ingest"

    def get_rate(self) -> str | None:
        return settings.DAP_PROFILE_INGEST_RATE
