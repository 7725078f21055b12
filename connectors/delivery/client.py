"""The partner client contract and the lookup of a partner's client (connectors/partners/<key>/client.py)."""

from __future__ import annotations

import importlib
from functools import cache

import requests

from connectors.delivery.types import CallResult, ClientConfig, Item, ItemResult
from connectors.models import Outcome


class PartnerClient:
    """Base of every partner client. Stateless apart from the pooled session and cached tokens.

    Subclasses set `default_base_url` and implement `send`; `test_connection` makes a harmless real call.
    """

    default_base_url: str = ""

    def __init__(self, config: ClientConfig, session: requests.Session):
        self.config = config
        self.session = session

    @property
    def base_url(self) -> str:
        return (self.config.base_url_override or self.default_base_url).rstrip("/")

    @property
    def timeout(self) -> float:
        return self.config.timeout_seconds

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
        return ItemResult(Outcome.TIMEOUT, message=message, retryable=True)

    @staticmethod
    def connection_error_result(message: str) -> ItemResult:
        return ItemResult(Outcome.OTHER_ERROR, partner_code="connection_error", message=message, retryable=True)


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
