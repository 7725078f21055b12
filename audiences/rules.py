"""Audience rules: conditions on profile attributes in nested AND/OR groups, validated and compiled to SQL.

A rule is JSON:

    {"all": [                                   # AND group ("any" = OR group); groups nest
        {"attribute": "country", "op": "equals", "value": "NL"},
        {"any": [
            {"attribute": "orders", "op": "gte", "value": 3},
            {"attribute": "tags", "op": "contains", "value": "vip"},
        ]},
        {"attribute": "last_order_at", "op": "within_days", "value": 30},
    ]}

Operators: `equals`, `not_equals`, `in` (a list of values), `contains` (text contains, case-insensitive; on a list
attribute, an element's text), `gt`, `gte`, `lt`, `lte` (numbers, or ISO dates compared as text), `exists` (value
true/false), `within_days` (an ISO date or date-time attribute in the last N days, today included).

`rule_q(rule)` compiles a valid rule to a Django `Q` on `Profile.attributes`: the database evaluates it (JSON
key lookups on SQLite and PostgreSQL), so membership is computed set-based, never profile by profile in Python.
`validate_rule(rule)` raises a ValidationError naming the place of every problem ("all[1].any[0].op: …").
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from dap.service_helpers import MAX_INT64, MIN_INT64

OPERATORS = ("equals", "not_equals", "in", "contains", "gt", "gte", "lt", "lte", "exists", "within_days")
GROUPS = ("all", "any")
MAX_DEPTH = 6
MAX_CONDITIONS = 200
MAX_IN_VALUES = 1000
# Attribute names are JSON keys; "__" would be read as a lookup by the ORM, so it is refused.
ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SCALAR = (str, int, float, bool)
OUT_OF_RANGE = f"whole numbers from {MIN_INT64} to {MAX_INT64}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _out_of_range(value: Any) -> bool:
    """A whole number the database cannot compare (SQLite refuses integers beyond 64 bits)."""
    return isinstance(value, int) and not isinstance(value, bool) and not MIN_INT64 <= value <= MAX_INT64


def validate_rule(rule: Any) -> dict:
    """The rule itself when valid; else a ValidationError listing every problem with its place."""
    problems: list[str] = []
    count = [0]
    if not isinstance(rule, dict) or not any(k in rule for k in GROUPS):
        raise ValidationError({"rule": ['A rule is a group: {"all": [...]} or {"any": [...]}.']})
    _check_node(rule, "", 1, problems, count)
    if count[0] == 0:
        problems.append("the rule has no condition")
    if problems:
        raise ValidationError({"rule": problems})
    return rule


def _check_node(node: Any, where: str, depth: int, problems: list[str], count: list[int]) -> None:
    here = where or "rule"
    if not isinstance(node, dict):
        problems.append(f"{here}: expected a condition or a group (an object)")
        return
    groups = [k for k in GROUPS if k in node]
    if groups:
        if len(node) != 1:
            problems.append(f"{here}: a group has exactly one key, all or any")
            return
        key = groups[0]
        children = node[key]
        if depth > MAX_DEPTH:
            problems.append(f"{here}: groups nest at most {MAX_DEPTH} deep")
            return
        if not isinstance(children, list) or not children:
            problems.append(f"{here}.{key}: expected a non-empty list")
            return
        for i, child in enumerate(children):
            _check_node(child, f"{where + '.' if where else ''}{key}[{i}]", depth + 1, problems, count)
        return
    count[0] += 1
    if count[0] > MAX_CONDITIONS:
        if count[0] == MAX_CONDITIONS + 1:
            problems.append(f"a rule has at most {MAX_CONDITIONS} conditions")
        return
    unknown = sorted(set(node) - {"attribute", "op", "value"})
    if unknown:
        problems.append(f"{here}: unknown key(s) {', '.join(unknown)}")
    attribute, op, value = node.get("attribute"), node.get("op"), node.get("value")
    if not isinstance(attribute, str) or not ATTRIBUTE.fullmatch(attribute) or "__" in attribute:
        problems.append(
            f"{here}.attribute: a name of letters, digits and single underscores (not starting with a digit)"
        )
    if op not in OPERATORS:
        problems.append(f"{here}.op: one of {', '.join(OPERATORS)}")
        return
    message = _value_problem(op, value, "value" in node)
    if message:
        problems.append(f"{here}.value: {message}")


def _value_problem(op: str, value: Any, given: bool) -> str:
    in_range = not (_out_of_range(value) or (isinstance(value, list) and any(_out_of_range(v) for v in value)))
    if op not in ("exists", "within_days") and not in_range:
        return OUT_OF_RANGE
    if op == "exists":
        return "" if isinstance(value, bool) or not given else "true or false"
    if not given:
        return "required"
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            return f"a list of 1 to {MAX_IN_VALUES} values"
        if not all(isinstance(v, SCALAR) for v in value):
            return "values are text, numbers or true/false"
        return ""
    if op == "within_days":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 36500:
            return "a whole number of days (0 to 36500)"
        return ""
    if op in ("gt", "gte", "lt", "lte"):
        return "" if _is_number(value) or isinstance(value, str) else "a number or an ISO date"
    if op == "contains":
        return "" if isinstance(value, str) and value else "non-empty text"
    return "" if isinstance(value, SCALAR) or value is None else "text, a number, true/false or null"


def rule_q(rule: dict) -> Q:
    """The rule as a Q on Profile (validate first: this assumes a valid rule)."""
    return _node_q(rule)


def _node_q(node: dict) -> Q:
    if "all" in node:
        q = Q()
        for child in node["all"]:
            q &= _node_q(child)
        return q
    if "any" in node:
        children = [_node_q(child) for child in node["any"]]
        q = children[0]
        for child in children[1:]:
            q |= child
        return q
    return _condition_q(node["attribute"], node["op"], node.get("value", True))


def _condition_q(attribute: str, op: str, value: Any) -> Q:
    key = f"attributes__{attribute}"
    has = Q(attributes__has_key=attribute)
    if op == "equals":  # value None matches a JSON null (a key that is absent does not)
        return Q(**{key: value})
    if op == "not_equals":
        return has & ~Q(**{key: value})
    if op == "in":
        return Q(**{f"{key}__in": value})
    if op == "contains":
        return Q(**{f"{key}__icontains": value})
    if op in ("gt", "gte", "lt", "lte"):
        return Q(**{f"{key}__{op}": value})
    if op == "exists":
        return has if value else ~has
    if op == "within_days":
        today = timezone.localdate()
        since = (today - timedelta(days=value)).isoformat()
        until = (today + timedelta(days=1)).isoformat()  # any time today, not the future
        return Q(**{f"{key}__gte": since}) & Q(**{f"{key}__lt": until})
    raise ValueError(f"unknown operator {op!r}")


def attributes_used(rule: dict) -> set[str]:
    """The attribute names a rule reads (for the pages)."""
    if "all" in rule or "any" in rule:
        return set().union(*(attributes_used(c) for c in rule.get("all", rule.get("any", []))))
    return {rule["attribute"]}
