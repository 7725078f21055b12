"""What the dispatcher hands a partner client, and what the client answers.

A client never touches the database: it gets `Item`s (one per profile, already coalesced) and returns one
`CallResult` per HTTP call it made, each naming the items it covered and one `ItemResult` per item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.models import Outcome


class Action:
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"
    ALL = (ADD, REMOVE, UPDATE)


@dataclass(slots=True)
class Item:
    """One profile change to send. `identifier` is the raw value from the profile's slot (normalised by the client)."""

    profile_id: int
    action: str
    slot: str
    identifier: str
    # Profile variables the audience connection asks for (webhook payloads); {} otherwise.
    variables: dict[str, Any] = field(default_factory=dict)
    # Partner-side target from the audience connection (Meta custom audience id, segment id, …).
    partner_audience_id: str = ""
    # Idempotency key of the newest outbox row this item stands for.
    delivery_id: int = 0
    # When that change was enqueued (seconds since the epoch; 0.0 unknown): the event time for conversion partners,
    # the same on every retry.
    enqueued_at: float = 0.0


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one item. `retryable` outcomes go back to the outbox with backoff."""

    outcome: str  # an Outcome value
    partner_code: str = ""
    message: str = ""
    retryable: bool = False

    @classmethod
    def ok(cls, action: str) -> ItemResult:
        return cls(Outcome.REMOVED if action == Action.REMOVE else Outcome.ADDED)


@dataclass
class CallResult:
    """One partner call: which items it carried (indices into the list given to `send`) and how each ended."""

    item_indices: list[int]
    results: list[ItemResult]
    status_code: int | None = None
    duration_ms: float = 0.0
    partner_code: str = ""
    snippet: str = ""  # redacted, never holds identifiers or secrets
    retry_after: float | None = None  # seconds, from the partner's Retry-After
    credentials_invalid: bool = False
    # Webhook 410 Gone and the like: the endpoint told us to stop (the configuration is paused).
    endpoint_gone: bool = False

    def __post_init__(self):
        if len(self.item_indices) != len(self.results):
            raise ValueError("one ItemResult per item")


@dataclass(frozen=True)
class ClientConfig:
    """What a client knows of its configuration: a snapshot, so clients stay free of the ORM."""

    partner_config_id: int
    settings: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)  # never in a repr, a log line or an error report
    timeout_seconds: float
    base_url_override: str = ""
