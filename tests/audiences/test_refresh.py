"""The refresh: every operator and nested groups through the database, the membership diff, the change log, and the
outbox rows it writes (an add per enter, a remove per exit, per connection, exactly once)."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from audiences import services, tasks
from audiences.models import Audience, AudienceMembership, AudienceMembershipChange, Profile
from audiences.rules import rule_q
from connectors.models import DailyStat, Delivery, Outcome
from tests.audiences.factories import config_for, connect, deliveries, make_profile, members, rule_audience

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
    return {name: make_profile(name, attributes, customer_id=f"c-{name}") for name, attributes in rows.items()}


def cond(attribute, op, value=None, **extra):
    node = {"attribute": attribute, "op": op}
    if value is not None or op not in ("exists",):
        node["value"] = value
    return node


OPERATOR_CASES = [
    (cond("country", "equals", "NL"), ["ann", "cem"]),
    (cond("member", "equals", True), ["ann"]),
    (cond("nickname", "equals", None), ["dee"]),
    (cond("country", "not_equals", "NL"), ["bob", "dee"]),
    (cond("country", "in", ["BE", "DE"]), ["bob", "dee"]),
    (cond("city", "contains", "ANT"), ["bob"]),
    (cond("tags", "contains", "vip"), ["ann"]),
    (cond("orders", "gt", 1), ["ann", "dee"]),
    (cond("orders", "gte", 1), ["ann", "bob", "dee"]),
    (cond("orders", "lt", 1), ["cem"]),
    (cond("orders", "lte", 1), ["bob", "cem"]),
    (cond("score", "gte", 7), ["ann"]),
    (cond("last_order_at", "gte", days_ago(10)), ["ann", "cem"]),
    ({"attribute": "tags", "op": "exists", "value": True}, ["ann", "bob", "dee"]),
    ({"attribute": "tags", "op": "exists", "value": False}, ["cem", "eve"]),
    (cond("last_order_at", "within_days", 7), ["ann", "cem"]),
    (cond("last_order_at", "within_days", 0), ["cem"]),
]


@pytest.mark.parametrize(
    ("condition", "expected"), OPERATOR_CASES, ids=[f"{c['op']}-{c['attribute']}" for c, _ in OPERATOR_CASES]
)
def test_every_operator_through_a_refresh(people, condition, expected):
    rule = {"all": [condition]}
    audience = rule_audience(rule)
    result = services.audience_refresh(audience=audience)
    assert members(audience) == expected
    assert (result.enters, result.exits, result.size) == (len(expected), 0, len(expected))
    assert members(audience) == sorted(Profile.objects.filter(rule_q(rule)).values_list("external_id", flat=True))


def test_nested_groups(people):
    rule = {
        "any": [
            {
                "all": [
                    cond("country", "equals", "NL"),
                    {"any": [cond("orders", "gte", 3), cond("tags", "exists", None)]},
                ]
            },
            {"all": [cond("country", "in", ["DE", "BE"]), cond("orders", "gt", 10)]},
        ]
    }
    rule["any"][0]["all"][1]["any"][1] = {"attribute": "tags", "op": "exists", "value": True}
    audience = rule_audience(rule)
    services.audience_refresh(audience=audience)
    assert members(audience) == ["ann", "dee"]


def test_a_static_list_has_no_rule_and_a_rule_based_audience_needs_a_valid_one():
    with pytest.raises(ValidationError) as exc:
        services.audience_create(name="A", rule={"all": [{"attribute": "x", "op": "near", "value": 1}]})
    assert exc.value.message_dict["rule"] == ["all[0].op: one of equals, not_equals, in, contains, gt, gte, lt, lte, "
                                              "exists, within_days"]  # fmt: skip
    with pytest.raises(ValidationError) as exc:
        services.audience_create(name="B", kind="static", rule={"all": [cond("x", "equals", 1)]})
    assert "rule" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.audience_create(name="", kind="other")
    assert set(exc.value.message_dict) == {"name", "kind"}
    assert not Audience.objects.exists()


def test_enters_and_exits_queue_add_and_remove_exactly_once(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    config = config_for("webhook")
    connect(audience, config)  # no members yet: nothing queued
    assert deliveries() == []

    first = services.audience_refresh(audience=audience)
    assert (first.enters, first.exits, first.outbox.pending) == (2, 0, 2)
    assert deliveries() == [("ann", "add", "pending"), ("cem", "add", "pending")]
    assert set(Delivery.objects.values_list("audience_id", "partner_config_id")) == {(audience.pk, config.pk)}

    again = services.audience_refresh(audience=audience)
    assert (again.enters, again.exits, again.outbox.rows) == (0, 0, 0)
    assert Delivery.objects.count() == 2  # a refresh without change queues nothing

    Delivery.objects.all().delete()  # sent
    Profile.objects.filter(external_id="ann").update(attributes={"country": "BE"})
    Profile.objects.filter(external_id="bob").update(attributes={"country": "NL"})
    third = services.audience_refresh(audience=audience)
    assert (third.enters, third.exits, third.size) == (1, 1, 2)
    assert deliveries() == [("ann", "remove", "pending"), ("bob", "add", "pending")]
    assert members(audience) == ["bob", "cem"]
    assert services.audience_refresh(audience=audience).outbox.rows == 0
    assert Delivery.objects.count() == 2

    log = AudienceMembershipChange.objects.filter(audience=audience)
    assert sorted(log.filter(kind="enter").values_list("profile__external_id", flat=True)) == ["ann", "bob", "cem"]
    assert list(log.filter(kind="exit").values_list("profile__external_id", flat=True)) == ["ann"]
    audience.refresh_from_db()
    assert (audience.member_count, audience.last_refresh_enters, audience.last_refresh_exits) == (2, 0, 0)
    assert audience.refreshed_at is not None and audience.last_refresh_seconds is not None


def test_a_leaver_whose_add_is_still_pending_gets_the_remove_only(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    config = config_for("webhook")
    connect(audience, config)
    services.audience_refresh(audience=audience)
    Profile.objects.filter(external_id="ann").update(attributes={})
    result = services.audience_refresh(audience=audience)
    assert result.outbox.replaced == 1
    assert deliveries() == [("ann", "remove", "pending"), ("cem", "add", "pending")]


def test_another_audiences_pending_change_on_the_same_configuration_stays(people):
    """Two audiences sent to one configuration name two partner-side audiences: a refresh of one never replaces
    the other's pending change for the same profile."""
    config = config_for("webhook")
    dutch = rule_audience({"all": [cond("country", "equals", "NL")]}, name="Dutch")
    buyers = rule_audience({"all": [cond("orders", "gte", 1)]}, name="Buyers")
    connect(dutch, config, "dutch")
    connect(buyers, config, "buyers")
    services.audience_refresh(audience=dutch)
    services.audience_refresh(audience=buyers)
    Profile.objects.filter(external_id="ann").update(attributes={"orders": 5})  # leaves Dutch, stays a buyer
    assert services.audience_refresh(audience=dutch).outbox.replaced == 1  # Dutch's own pending add only
    rows = Delivery.objects.filter(profile__external_id="ann").order_by("id")
    assert [(d.audience.name, d.action) for d in rows] == [("Buyers", "add"), ("Dutch", "remove")]


def test_every_connection_gets_the_changes_and_deactivated_connectors_count_as_skipped(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    active, off = config_for("webhook"), config_for("webhook", deactivated=True)
    connect(audience, active)
    connect(audience, off)
    result = services.audience_refresh(audience=audience)
    assert (result.outbox.pending, result.outbox.skipped) == (2, 2)
    assert deliveries(partner_config=active) == [("ann", "add", "pending"), ("cem", "add", "pending")]
    assert set(Delivery.objects.filter(partner_config=off).values_list("status", "outcome")) == {
        ("skipped", Outcome.SKIPPED_DEACTIVATED)
    }
    stat = DailyStat.objects.get(partner_config=off)
    assert (stat.outcome, stat.count) == (Outcome.SKIPPED_DEACTIVATED, 2)
    assert not DailyStat.objects.filter(partner_config=active).exists()


def test_an_action_the_partner_does_not_sync_is_not_queued(people):
    """CM360 records conversions on add only: leaving sends nothing to it."""
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    cm360 = config_for("google_cm360")
    connect(audience, cm360)
    services.audience_refresh(audience=audience)
    Delivery.objects.all().delete()
    Profile.objects.filter(external_id="ann").update(attributes={})
    result = services.audience_refresh(audience=audience)
    assert (result.exits, result.outbox.rows) == (1, 0)
    assert not Delivery.objects.exists()


def test_a_removing_connection_gets_nothing_new(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    config = config_for("webhook")
    conn = connect(audience, config)
    conn.removing_since = timezone.now()
    conn.save()
    assert services.audience_refresh(audience=audience).outbox.rows == 0


def test_a_member_whose_profile_is_gone_leaves(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    services.audience_refresh(audience=audience)
    with connection.cursor() as cursor:  # deleted behind Django's back: no cascade
        cursor.execute("DELETE FROM audiences_profileidentifier WHERE profile_id = %s", [people["ann"].pk])
        cursor.execute("DELETE FROM audiences_profile WHERE id = %s", [people["ann"].pk])
    result = services.audience_refresh(audience=audience)
    assert (result.enters, result.exits, result.size) == (0, 1, 1)
    assert list(AudienceMembership.objects.filter(audience=audience).values_list("profile_id", flat=True)) == [
        people["cem"].pk
    ]


def test_a_rule_based_audience_without_a_rule_is_not_evaluated(people):
    audience = Audience.objects.create(name="Legacy")  # written directly (demo data): no rule
    AudienceMembership.objects.create(audience=audience, profile=people["eve"])
    with pytest.raises(ValidationError) as exc:
        services.audience_refresh(audience=audience)
    assert "rule" in exc.value.message_dict
    assert members(audience) == ["eve"]
    assert tasks.refresh_audience(audience.pk) == {"refreshed": False}


def test_the_first_refresh_counts_members_written_before(people):
    audience = Audience.objects.create(name="Legacy", rule={"all": [cond("country", "equals", "NL")]})
    AudienceMembership.objects.create(audience=audience, profile=people["ann"])
    result = services.audience_refresh(audience=audience)
    assert (result.enters, result.exits, result.size) == (1, 0, 2)


def test_changing_the_rule_refreshes_after_commit(people, django_capture_on_commit_callbacks, monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: calls.append(args))
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    with django_capture_on_commit_callbacks(execute=True):
        services.audience_update(audience=audience, rule={"all": [cond("country", "equals", "BE")]})
    assert calls == [("audiences.tasks.refresh_audience", audience.pk)]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.audience_update(audience=audience, name="Renamed")
    assert callbacks == []
    with pytest.raises(ValidationError):
        services.audience_update(audience=audience, rule={"all": []})
    audience.refresh_from_db()
    assert audience.rule == {"all": [cond("country", "equals", "BE")]} and audience.name == "Renamed"


def test_delete_is_refused_while_connected(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    conn = connect(audience, config_for("webhook"))
    services.audience_refresh(audience=audience)
    with pytest.raises(ValidationError) as exc:
        services.audience_delete(audience=audience)
    assert "Delete its connections first" in exc.value.messages[0]
    services.audience_connection_delete(audience_connection=conn)
    services.audience_delete(audience=audience)
    assert not AudienceMembership.objects.exists() and not AudienceMembershipChange.objects.exists()


# --- the schedule --------------------------------------------------------------------------------------------------


def test_the_schedules_exist():
    from django_q.models import Schedule

    refresh = Schedule.objects.get(name="dap: refresh audiences")
    assert (refresh.func, refresh.schedule_type, refresh.minutes) == ("audiences.tasks.refresh_all", "I", 5)
    assert Schedule.objects.get(name="dap: prune audience changes").func == "audiences.tasks.prune_changes"


def test_the_schedule_refreshes_every_audience_it_can_and_drops_finished_removals(people):
    nl = rule_audience({"all": [cond("country", "equals", "NL")]}, name="NL")
    static = services.audience_create(name="List", kind="static")
    services.audience_entries_upload(audience=static, slot="customer_id", values=["c-bob"])
    legacy = Audience.objects.create(name="Legacy")
    removing = connect(nl, config_for("webhook"))
    removing.removing_since = timezone.now()
    removing.save()

    ProfileIdentifierModel = people["dee"].identifiers.model
    ProfileIdentifierModel.objects.create(profile=people["dee"], slot="email", value="dee@example.com")
    services.audience_entries_upload(audience=static, slot="email", values=["dee@example.com"])
    Profile.objects.filter(external_id="eve").update(attributes={"country": "NL"})

    report = tasks.refresh_all()
    assert report["refreshed"] == 2 and report["failed"] == 0
    assert report["connections_dropped"] == 1
    assert members(nl) == ["ann", "cem", "eve"]
    assert members(static) == ["bob", "dee"]
    assert members(legacy) == []
    legacy.refresh_from_db()
    assert legacy.refreshed_at is None


def test_pruning_drops_old_changes(people):
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    services.audience_refresh(audience=audience)
    AudienceMembershipChange.objects.filter(profile=people["ann"]).update(at=timezone.now() - timedelta(days=31))
    assert tasks.prune_changes() == 1
    assert list(AudienceMembershipChange.objects.values_list("profile__external_id", flat=True)) == ["cem"]


# --- concurrency ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_two_refreshes_of_one_audience_never_overlap():
    make_profile("p1", {"country": "NL"})
    audience = rule_audience({"all": [cond("country", "equals", "NL")]})
    locked, release, done = threading.Event(), threading.Event(), {}

    def first_refresh():
        from django.db import connection as thread_connection

        try:
            with transaction.atomic():
                services._lock_audience(audience.pk)  # what a running refresh holds
                locked.set()
                release.wait(10)
        finally:
            thread_connection.close()

    thread = threading.Thread(target=first_refresh)
    thread.start()
    assert locked.wait(10)
    try:
        skipped = services.audience_refresh(audience=audience, wait=False)
        assert (skipped.refreshed, skipped.skipped) == (False, "locked")
        assert not AudienceMembership.objects.exists()

        def waiting_refresh():
            from django.db import connection as thread_connection

            try:
                done["result"] = services.audience_refresh(audience=audience)
            finally:
                thread_connection.close()

        waiter = threading.Thread(target=waiting_refresh)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # waits for the first one
    finally:
        release.set()
        thread.join(10)
    waiter.join(10)
    assert done["result"].enters == 1
