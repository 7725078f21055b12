"""Reads for audiences: lists with sizes and connection counts, members, recent changes, entries, rules in words."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from audiences.models import (
    Audience,
    AudienceConnection,
    AudienceEntry,
    AudienceMembership,
    AudienceMembershipChange,
    Profile,
)
from connectors.partners.registry import REGISTRY


def audience_list(*, search: str = "", kind: str = "") -> QuerySet[Audience]:
    """Audiences by name with `size` (the last refresh's count; counted live for one never refreshed) and
    `connection_count` (live connections)."""
    queryset = Audience.objects.all()
    if search:
        queryset = queryset.filter(name__icontains=search)
    if kind:
        queryset = queryset.filter(kind=kind)
    live_count = Subquery(
        AudienceMembership.objects.filter(audience_id=OuterRef("pk"))
        .order_by()
        .values("audience_id")
        .annotate(n=Count("*"))
        .values("n")[:1],
        output_field=IntegerField(),
    )
    return queryset.annotate(
        size=Case(
            When(refreshed_at__isnull=True, then=Coalesce(live_count, Value(0))),
            default=F("member_count"),
            output_field=IntegerField(),
        ),
        connection_count=Count("connections", filter=Q(connections__removing_since__isnull=True), distinct=True),
    ).order_by("name")


def audience_get(*, pk: int) -> Audience:
    return audience_list().get(pk=pk)


def audience_connections(*, audience: Audience) -> list[AudienceConnection]:
    """The audience's connections (removing ones too) with their configuration, connector and partner."""
    connections = list(
        AudienceConnection.objects.filter(audience=audience)
        .select_related("partner_config__connector")
        .order_by("partner_config__connector__name", "partner_config__name", "id")
    )
    for conn in connections:
        conn.partner = REGISTRY.get(conn.partner_config.connector.partner_key)
    return connections


def audience_members(*, audience: Audience) -> QuerySet[AudienceMembership]:
    """Members in profile id order (served by the unique (audience, profile) index, so pages stay cheap)."""
    return (
        AudienceMembership.objects.filter(audience=audience)
        .select_related("profile")
        .only("id", "profile_id", "entered_at", "audience_id", "profile__external_id")
        .order_by("profile_id")
    )


def audience_recent_changes(*, audience: Audience, kind: str, limit: int | None = None) -> QuerySet:
    """Enters (or exits) newest first, walking the (audience, kind, at) index backwards: cheap however many rows
    one refresh wrote."""
    queryset = AudienceMembershipChange.objects.filter(audience=audience, kind=kind)
    # A subquery, not a join: the log keeps the changes of profiles deleted since (external_id None).
    external_id = Subquery(Profile.objects.filter(pk=OuterRef("profile_id")).values("external_id")[:1])
    queryset = queryset.annotate(external_id=external_id).order_by("-at")
    return queryset[:limit] if limit else queryset


def audience_entry_summary(*, audience: Audience) -> dict:
    """How many uploaded values per slot, and in total."""
    by_slot = dict(
        AudienceEntry.objects.filter(audience=audience)
        .values("slot")
        .annotate(n=Count("*"))
        .order_by("slot")
        .values_list("slot", "n")
    )
    return {"total": sum(by_slot.values()), "by_slot": by_slot}


# --- rules in words -------------------------------------------------------------------------------------------------

OP_WORDS = {
    "equals": "is",
    "not_equals": "is not",
    "in": "is one of",
    "contains": "contains",
    "gt": "is greater than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
}


def _value_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def condition_text(node: dict) -> str:
    attribute, op, value = node.get("attribute"), node.get("op"), node.get("value", True)
    if op == "exists":
        return f"{attribute} is set" if value else f"{attribute} is not set"
    if op == "within_days":
        return f"{attribute} is today" if value == 0 else f"{attribute} is within the last {value} days"
    if op == "in":
        return f"{attribute} is one of {', '.join(_value_text(v) for v in value)}"
    return f"{attribute} {OP_WORDS.get(op, op)} {_value_text(value)}"


def rule_lines(rule: dict | None) -> list[tuple[int, str]]:
    """(depth, text) per group and condition, for an indented rendering."""
    lines: list[tuple[int, str]] = []

    def walk(node: dict, depth: int) -> None:
        for key, label in (("all", "All of"), ("any", "Any of")):
            if key in node:
                lines.append((depth, f"{label}:"))
                for child in node[key]:
                    walk(child, depth + 1)
                return
        lines.append((depth, condition_text(node)))

    if rule:
        walk(rule, 0)
    return lines


def rule_text(rule: dict | None) -> str:
    """The rule on one line: `all of (country is "NL"; any of (orders is at least 3; tags contains "vip"))`."""
    if not rule:
        return ""

    def text(node: dict) -> str:
        for key in ("all", "any"):
            if key in node:
                return f"{key} of ({'; '.join(text(child) for child in node[key])})"
        return condition_text(node)

    return text(rule)
