"""The partner client contract and the lookup of a partner's client (connectors/partners/<key>/client.py)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING

import requests
from django.conf import settings

from connectors.delivery import http, ratelimit
from connectors.delivery.types import CallResult, ClientConfig, Item, ItemResult
from connectors.models import Outcome

if TYPE_CHECKING:
    from connectors.partners.base import Partner


class PartnerClient:
    """Base of every partner client. Stateless apart from the pooled session and cached tokens.

    Subclasses set `partner` (their descriptor), `default_base_url` or use `url(host, path)`, and implement `send`;
    `test_connection` makes a harmless real call. `error_codes` maps the partner's codes to plain words.
    """

    partner: Partner | None = None
    default_base_url: str = ""
    # Partner error code ("code" or "code/subcode") -> what it means, shown next to the statistics.
    error_codes: dict[str, str] = {}
    # Clients making one request per item run them concurrently on a thread pool of this size (see `pool`).
    max_workers: int = 1

    def __init__(self, config: ClientConfig, session: requests.Session):
        self.config = config
        self.session = session
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        """The client's thread pool (`max_workers` threads), created on first use and kept for later sends."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    name = self.partner.key if self.partner else "partner"
                    self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix=name)
        return self._executor

    def close(self) -> None:
        """Stop the thread pool when the dispatcher replaces this client (the session belongs to the dispatcher)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    @property
    def base_url(self) -> str:
        return (self.config.base_url_override or self.default_base_url).rstrip("/")

    def url(self, host: str, path: str) -> str:
        """`https://<host><path>`; with a base URL override (the local sandbox) the partner's host becomes the first
        path segment under it, so partners with several hosts (auth, API, upload) all map onto one override."""
        override = self.config.base_url_override
        if override:
            return f"{override.rstrip('/')}/{host}{path}"
        return f"https://{host}{path}"

    @property
    def timeout(self) -> float:
        return self.config.timeout_seconds

    @classmethod
    def error_meaning(cls, partner_code: str) -> str:
        """Plain words for a partner code: exact match, then without its "/subcode", then generic HTTP classes."""
        if not partner_code:
            return ""
        codes = cls.error_codes
        if partner_code in codes:
            return codes[partner_code]
        head = partner_code.split("/", 1)[0]
        if head in codes:
            return codes[head]
        if head.startswith("http_") and head[5:].isdigit():
            status = int(head[5:])
            if status == 429:
                return "The partner asked us to slow down (HTTP 429); retried later."
            if status >= 500:
                return f"The partner answered HTTP {status} (server error); retried."
            return f"The partner answered HTTP {status}."
        return GENERIC_CODES.get(head, "")

    # Quota and the one call -----------------------------------------------------------------------
    @property
    def quota(self) -> ratelimit.Quota | None:
        """The partner's documented request quota, applied per configuration (None: no limit declared)."""
        limits = self.partner.limits if self.partner else None
        if limits and limits.requests_per_minute:
            return ratelimit.Quota(count=limits.requests_per_minute, per_seconds=60.0)
        return None

    def quota_key(self) -> str:
        return f"config:{self.config.partner_config_id}"

    def wait_for_quota(self) -> float:
        """Block until the configuration's token bucket gives a token (up to DAP_RATE_LIMIT_MAX_WAIT_SECONDS);
        0.0 when the call may go, else the seconds to wait (the caller defers its items)."""
        quota = self.quota
        if quota is None:
            return 0.0
        return ratelimit.acquire(self.quota_key(), quota, max_wait=settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS)

    def call(
        self,
        indices: list[int],
        method: str,
        url: str,
        classify: Callable[[http.Timed], CallResult],
        *,
        rate_limited: bool = True,
        **kwargs,
    ) -> CallResult:
        """One partner request for the items at `indices`: waits for the quota, sends with the configuration's
        deadline, maps transport failures (timeout, connection error) to retryable results, and hands an answer to
        `classify`. Never raises for network trouble."""
        if rate_limited:
            wait = self.wait_for_quota()
            if wait > 0:
                message = f"partner quota reached; next call possible in {wait:.1f} s"
                result = ItemResult(Outcome.OTHER_ERROR, partner_code="rate_limited", message=message, retryable=True)
                return self.all_items(
                    indices, result, partner_code="rate_limited", snippet=f"not sent: {message}", retry_after=wait
                )
        kwargs.setdefault("allow_redirects", False)
        try:
            timed = http.request(self.session, method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.Timeout as exc:
            message = http.redact(str(exc) or "timeout", limit=200)
            return self.all_items(indices, self.timeout_result(message), snippet=message)
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            message = http.redact(str(exc), limit=200)
            return self.all_items(
                indices, self.connection_error_result(message), partner_code="connection_error", snippet=message
            )
        except requests.exceptions.RequestException as exc:
            message = http.redact(str(exc), limit=200)
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="request_error", message=message)
            return self.all_items(indices, result, partner_code="request_error", snippet=message)
        return classify(timed)

    def send(self, action: str, items: list[Item]) -> list[CallResult]:  # pragma: no cover - interface
        """Send these items (all the same action, at most the partner's batch size); one CallResult per call."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:  # pragma: no cover - interface
        raise NotImplementedError

    # Helpers for the common failure shapes ------------------------------------------------------
    @staticmethod
    def all_items(indices: list[int], result: ItemResult, **call) -> CallResult:
        return CallResult(item_indices=list(indices), results=[result] * len(indices), **call)

    @staticmethod
    def timeout_result(message: str = "timeout") -> ItemResult:
        return ItemResult(Outcome.TIMEOUT, partner_code="timeout", message=message, retryable=True)

    @staticmethod
    def connection_error_result(message: str) -> ItemResult:
        return ItemResult(Outcome.OTHER_ERROR, partner_code="connection_error", message=message, retryable=True)


# Codes the platform itself gives (not the partner's); partner clients add theirs in `error_codes`.
GENERIC_CODES = {
    "rate_limited": "The partner's request quota for this configuration was reached; retried when it allows.",
    "connection_error": "Could not connect to the partner; retried.",
    "timeout": "The partner did not answer within the configuration's timeout; retried until the retry window ends.",
    "request_error": "The request could not be made.",
    "client_error": "The platform's client for this partner failed; retried.",
    "invalid_response": "The partner's answer could not be read; retried.",
    "invalid_identifier": "The identifier is empty or invalid once normalised, so it was not sent.",
    "no_partner_audience_id": "The audience connection has no partner-side audience or segment id.",
    "unsupported_slot": "The partner cannot match on this identifier.",
}


@cache
def client_class(partner_key: str) -> type[PartnerClient] | None:
    """The partner's client class, or None while its wire protocol is not implemented."""
    try:
        module = importlib.import_module(f"connectors.partners.{partner_key}.client")
    except ModuleNotFoundError as exc:
        if exc.name == f"connectors.partners.{partner_key}.client":
            return None
        raise
    return module.Client
