"""Errors the connector services raise; the API, pages and admin turn them into clear answers."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """One place that uses a connector configuration (an audience connection or a journey step)."""

    kind: str  # "audience" or "journey"
    object_id: int
    name: str
    partner_config_id: int
    partner_config_name: str
    detail: str = ""
    url: str = ""

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "id": self.object_id,
            "name": self.name,
            "partner_config_id": self.partner_config_id,
            "partner_config_name": self.partner_config_name,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        label = "Audience" if self.kind == "audience" else "Journey"
        extra = f" ({self.detail})" if self.detail else ""
        return f'{label} "{self.name}" via configuration "{self.partner_config_name}"{extra}'


class InUseError(Exception):
    """Refusal to delete something that audiences or journeys still use; carries every usage."""

    def __init__(self, what: str, usages: list[Usage]):
        self.usages = usages
        super().__init__(f"{what} cannot be deleted: it is used in {len(usages)} place(s).")
