"""Rules: every operator and nested groups, evaluated by the database; invalid rules refused with their place."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audiences.models import Profile
from audiences.rules import attributes_used, rule_q, validate_rule

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


@pytest.fixture
def people():
    rows = {
        "ann": {"country": "NL", "orders": 5, "tags": ["vip", "newsletter"], "last_order_at": days_ago(3),
                "city": "Amsterdam", "score": 7.5, "member": True},
        "bob": {"country": "BE", "orders": 1, "tags": ["newsletter"], "last_order_at": days_ago(40),
                "city": "Antwerpen", "member": False},
        "cem": {"country": "NL", "orders": 0, "city": "Rotterdam", "last_order_at": days_ago(0) + "T09:30:00+00:00"},
        "dee": {"country": "DE", "orders": 12, "tags": [], "nickname": None},
        "eve": {},
    }  # fmt: skip
    for name, attributes in rows.items():
        Profile.objects.create(external_id=name, attributes=attributes)


def match(rule) -> list[str]:
    validate_rule(rule)
    return sorted(Profile.objects.filter(rule_q(rule)).values_list("external_id", flat=True))


def cond(attribute, op, value=None, **extra):
    node = {"attribute": attribute, "op": op, **extra}
    if value is not None or op in ("equals", "not_equals"):
        node["value"] = value
    return {"all": [node]}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("country", "equals", "NL"), ["ann", "cem"]),
        (cond("member", "equals", True), ["ann"]),
        (cond("orders", "equals", 5), ["ann"]),
        (cond("nickname", "equals", None), ["dee"]),
        (cond("country", "not_equals", "NL"), ["bob", "dee"]),  # profiles without the attribute do not match
        (cond("country", "in", ["BE", "DE"]), ["bob", "dee"]),
        (cond("city", "contains", "AM"), ["ann", "cem"]),  # case-insensitive: Amsterdam, Rotterdam
        (cond("tags", "contains", "vip"), ["ann"]),
        (cond("orders", "gt", 1), ["ann", "dee"]),
        (cond("orders", "gte", 1), ["ann", "bob", "dee"]),
        (cond("orders", "lt", 1), ["cem"]),
        (cond("orders", "lte", 1), ["bob", "cem"]),
        (cond("score", "gt", 7), ["ann"]),
        (cond("last_order_at", "gte", days_ago(10)), ["ann", "cem"]),
        (cond("tags", "exists", True), ["ann", "bob", "dee"]),
        (cond("tags", "exists", False), ["cem", "eve"]),
        (cond("last_order_at", "within_days", 7), ["ann", "cem"]),
        (cond("last_order_at", "within_days", 0), ["cem"]),
        (cond("last_order_at", "within_days", 60), ["ann", "bob", "cem"]),
    ],
)
def test_each_operator(people, rule, expected):
    assert match(rule) == expected


def test_nested_and_or_groups(people):
    rule = {
        "all": [
            {"any": [{"attribute": "country", "op": "equals", "value": "NL"},
                     {"attribute": "country", "op": "equals", "value": "DE"}]},
            {"any": [{"attribute": "orders", "op": "gte", "value": 10},
                     {"all": [{"attribute": "tags", "op": "contains", "value": "vip"},
                              {"attribute": "last_order_at", "op": "within_days", "value": 7}]}]},
        ]
    }  # fmt: skip
    assert match(rule) == ["ann", "dee"]
    assert attributes_used(rule) == {"country", "orders", "tags", "last_order_at"}
    assert match({"any": [{"attribute": "country", "op": "equals", "value": "BE"}, rule]}) == ["ann", "bob", "dee"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ([], "A rule is a group"),
        ({"all": []}, "all: expected a non-empty list"),
        ({"all": [{"attribute": "x", "op": "bigger", "value": 1}]}, "all[0].op: one of"),
        ({"all": [{"attribute": "a__b", "op": "equals", "value": 1}]}, "all[0].attribute"),
        ({"all": [{"attribute": "1st", "op": "equals", "value": 1}]}, "all[0].attribute"),
        ({"all": [{"attribute": "x", "op": "in", "value": "NL"}]}, "all[0].value: a list"),
        ({"all": [{"attribute": "x", "op": "within_days", "value": -1}]}, "all[0].value: a whole number"),
        ({"all": [{"attribute": "x", "op": "gt", "value": [1]}]}, "all[0].value: a number or an ISO date"),
        ({"all": [{"attribute": "x", "op": "equals"}]}, "all[0].value: required"),
        ({"all": [{"attribute": "x", "op": "exists", "value": "yes"}]}, "all[0].value: true or false"),
        ({"all": [{"attribute": "x", "op": "equals", "value": 1, "extra": 2}]}, "unknown key(s) extra"),
        ({"all": [{"any": [{"attribute": "x", "op": "equals", "value": 1}], "all": []}]}, "exactly one key"),
        ({"any": [{"attribute": "ok", "op": "equals", "value": 1}, "text"]}, "any[1]: expected a condition"),
    ],
)
def test_invalid_rules_are_refused_with_the_place(rule, message):
    with pytest.raises(ValidationError) as caught:
        validate_rule(rule)
    assert any(message in m for m in caught.value.message_dict["rule"]), caught.value.message_dict


def test_depth_and_size_limits():
    deep = {"attribute": "x", "op": "equals", "value": 1}
    for _ in range(8):
        deep = {"all": [deep]}
    with pytest.raises(ValidationError, match="nest at most"):
        validate_rule(deep)
    wide = {"any": [{"attribute": "x", "op": "equals", "value": i} for i in range(201)]}
    with pytest.raises(ValidationError, match="at most 200 conditions"):
        validate_rule(wide)
