from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from connectors import services
from connectors.delivery import dispatcher, outbox
from connectors.delivery.types import CallResult, ItemResult
from connectors.models import DailyStat, Delivery, DeliveryAttempt, DispatchLease, Outcome, PartnerConfig
from tests.connectors.delivery.conftest import make_profiles
from tests.factories import AudienceConnectionFactory, PartnerConfigFactory

pytestmark = pytest.mark.django_db


def stats(config):
    return {(s.outcome, s.partner_error_code): s.count for s in DailyStat.objects.filter(partner_config=config)}


def enqueue(config, profiles, action="add", audience_id=None):
    return outbox.deliveries_enqueue(
        partner_config_ids=[config.pk], profile_ids=[p.pk for p in profiles], action=action, audience_id=audience_id
    )


def script(per_item):
    """A client answer built from a function of (index, item) -> ItemResult, one call for the batch."""

    def run(action, items):
        results = [per_item(i, it) for i, it in enumerate(items)]
        return [CallResult(item_indices=list(range(len(items))), results=results, status_code=200)]

    return run


def test_add_and_remove_are_sent_counted_and_leave_the_outbox(fake_client):
    config = PartnerConfigFactory()
    profiles = make_profiles(5)
    enqueue(config, profiles[:3], "add")
    enqueue(config, profiles[3:], "remove")
    report = dispatcher.dispatch_config(config.pk)
    assert report.outcomes == {Outcome.ADDED: 3, Outcome.REMOVED: 2}
    assert sorted(a for a, _ in fake_client.calls) == ["add", "remove"]
    assert not Delivery.objects.exists()
    assert stats(config) == {("added", ""): 3, ("removed", ""): 2}
    assert DeliveryAttempt.objects.filter(partner_config=config).count() == 2


def test_identifier_slot_and_partner_audience_id_reach_the_client(fake_client):
    config = PartnerConfigFactory()  # webhook, identifier slot customer_id
    conn = AudienceConnectionFactory(partner_config=config, partner_audience_id="seg-42")
    [profile] = make_profiles(1, audience=conn.audience)
    outbox.audience_members_enqueue(audience_id=conn.audience_id, profile_ids=[profile.pk], action="add")
    dispatcher.dispatch_config(config.pk)
    [(_, [item])] = fake_client.calls
    assert (item.slot, item.identifier, item.partner_audience_id) == ("customer_id", f"p-id-{profile.pk}", "seg-42")


def test_latest_action_wins_and_older_is_never_sent(fake_client):
    config = PartnerConfigFactory()
    [profile] = make_profiles(1)
    enqueue(config, [profile], "add")
    result = enqueue(config, [profile], "remove")
    assert result.replaced == 1  # the pending add was replaced at enqueue time
    dispatcher.dispatch_config(config.pk)
    assert [(a, [i.profile_id for i in items]) for a, items in fake_client.calls] == [("remove", [profile.pk])]


def test_coalescing_inside_one_claim(fake_client):
    config = PartnerConfigFactory()
    [profile] = make_profiles(1)
    now = timezone.now()
    Delivery.objects.bulk_create(
        [
            Delivery(partner_config=config, profile=profile, action=a, created_at=now, next_attempt_at=now)
            for a in ("add", "remove", "add")
        ]
    )
    report = dispatcher.dispatch_config(config.pk)
    assert report.replaced == 2
    assert [a for a, _ in fake_client.calls] == ["add"]
    assert stats(config) == {("added", ""): 1}


def test_no_identifier_and_no_consent_are_skipped(fake_client):
    config = PartnerConfigFactory()
    with_email_only = make_profiles(2, slot="email", prefix="e")
    no_consent = make_profiles(1, consent=False, prefix="n")
    enqueue(config, with_email_only + no_consent)
    dispatcher.dispatch_config(config.pk)
    assert fake_client.calls == []
    assert stats(config) == {("skipped_no_identifier", ""): 2, ("skipped_no_consent", ""): 1}
    assert set(Delivery.objects.values_list("status", "outcome")) == {
        ("skipped", "skipped_no_identifier"),
        ("skipped", "skipped_no_consent"),
    }


def test_batches_respect_the_partner_limit(fake_client, settings):
    settings.DAP_HTTP_CONCURRENCY = 4  # webhook: one request per profile, 4 * 4 per client call
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(40))
    dispatcher.dispatch_config(config.pk)
    assert [len(items) for _, items in fake_client.calls] == [16, 16, 8]


def test_partner_errors_are_recorded_per_row_with_code(fake_client):
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(4))
    fake_client.script = script(
        lambda i, it: (
            ItemResult(Outcome.PARTNER_ERROR, "2650", "Failed to update audience") if i % 2 else ItemResult.ok("add")
        )
    )
    dispatcher.dispatch_config(config.pk)
    assert stats(config) == {("added", ""): 2, ("partner_error", "2650"): 2}
    failed = Delivery.objects.filter(status="failed").first()
    assert (failed.outcome, failed.partner_error_code, failed.attempts) == ("partner_error", "2650", 1)
    assert failed.last_error == "Failed to update audience"


def test_retry_with_backoff_and_retry_after_then_fail_at_window(fake_client, settings):
    settings.DAP_RETRY_BASE_SECONDS = 10
    config = PartnerConfigFactory()
    [profile] = make_profiles(1)
    enqueue(config, [profile])
    fake_client.script = lambda action, items: [
        CallResult([0], [ItemResult(Outcome.TIMEOUT, message="timeout", retryable=True)], status_code=None)
    ]
    before = timezone.now()
    dispatcher.dispatch_config(config.pk)
    row = Delivery.objects.get()
    assert (row.status, row.attempts, row.outcome) == ("pending", 1, "timeout")
    assert before + timedelta(seconds=5) <= row.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert stats(config) == {}  # not final yet

    # Not due yet: nothing is claimed.
    assert dispatcher.dispatch_config(config.pk).claimed == 0

    # Second failure: backoff doubles (10..20 s), unless Retry-After asks for longer.
    Delivery.objects.update(next_attempt_at=timezone.now())
    fake_client.script = lambda action, items: [
        CallResult([0], [ItemResult(Outcome.PARTNER_ERROR, "429", retryable=True)], status_code=429, retry_after=600)
    ]
    dispatcher.dispatch_config(config.pk)
    row.refresh_from_db()
    assert row.attempts == 2
    assert row.next_attempt_at >= timezone.now() + timedelta(seconds=590)

    # Past the retry window the same failure is final.
    Delivery.objects.update(next_attempt_at=timezone.now(), created_at=timezone.now() - timedelta(hours=5))
    dispatcher.dispatch_config(config.pk)
    row.refresh_from_db()
    assert (row.status, row.outcome, row.partner_error_code, row.attempts) == ("failed", "partner_error", "429", 3)
    assert stats(config) == {("partner_error", "429"): 1}


def test_backoff_grows_exponentially_with_jitter(settings):
    settings.DAP_RETRY_BASE_SECONDS = 10
    settings.DAP_RETRY_MAX_SECONDS = 100
    for attempts, (low, high) in {1: (5, 10), 2: (10, 20), 3: (20, 40), 4: (40, 80), 6: (50, 100)}.items():
        delays = [dispatcher._backoff(attempts, None) for _ in range(50)]
        assert all(low <= d <= high for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert dispatcher._backoff(1, 300) == 300


def test_invalid_credentials_pause_and_resume(fake_client):
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(3))
    fake_client.script = lambda action, items: [
        CallResult(list(range(len(items))), [ItemResult(Outcome.INVALID_CREDENTIALS, "190")] * len(items),
                   status_code=400, credentials_invalid=True)
    ]  # fmt: skip
    dispatcher.dispatch_config(config.pk)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "190"): 3}
    assert Delivery.objects.filter(status="failed").count() == 3

    # Paused: newer changes are kept, not sent.
    enqueue(config, make_profiles(2, prefix="q"))
    fake_client.script = None
    fake_client.calls.clear()
    assert dispatcher.dispatch_config(config.pk).paused == "credentials_invalid"
    assert fake_client.calls == []
    assert Delivery.objects.filter(status="pending").count() == 2

    # New credentials resume sending.
    services.partner_config_update(
        partner_config=config, settings={"signing_secret": "whsec_" + "bmV3LXNpZ25pbmctc2VjcmV0LXZhbHVlLTEyMzQ1Njc4"}
    )
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK
    assert dispatcher.dispatch_config(config.pk).outcomes == {Outcome.ADDED: 2}


def test_admin_resume(fake_client):
    config = PartnerConfigFactory()
    PartnerConfig.objects.filter(pk=config.pk).update(health=PartnerConfig.Health.ENDPOINT_GONE)
    assert services.partner_config_resume(partner_config=config) is True
    assert services.partner_config_resume(partner_config=config) is False
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK


def test_deactivated_connector_sends_nothing_counts_skipped_and_resyncs(fake_client):
    config = PartnerConfigFactory()
    conn = AudienceConnectionFactory(partner_config=config)
    members = make_profiles(3, audience=conn.audience)
    enqueue(config, members[:1], audience_id=conn.audience_id)  # pending before deactivation
    services.connector_deactivate(connector=config.connector)
    result = enqueue(config, members[1:], audience_id=conn.audience_id)
    assert (result.pending, result.skipped) == (0, 2)
    assert stats(config) == {("skipped_deactivated", ""): 2}
    assert dispatcher.dispatch_config(config.pk).paused == "deactivated"
    assert fake_client.calls == []
    assert dispatcher.due_config_ids() == []

    services.connector_activate(connector=config.connector)
    report = dispatcher.dispatch_config(config.pk)
    assert report.outcomes == {Outcome.ADDED: 3}  # every current member, once
    assert sorted(i.profile_id for _, items in fake_client.calls for i in items) == sorted(p.pk for p in members)


def test_removal_skipped_while_deactivated_is_sent_after_reactivation(fake_client):
    config = PartnerConfigFactory()
    conn = AudienceConnectionFactory(partner_config=config)
    [leaver] = make_profiles(1)
    services.connector_deactivate(connector=config.connector)
    enqueue(config, [leaver], "remove", audience_id=conn.audience_id)
    services.connector_activate(connector=config.connector)
    dispatcher.dispatch_config(config.pk)
    assert [(a, [i.profile_id for i in items]) for a, items in fake_client.calls] == [("remove", [leaver.pk])]


def test_rows_of_a_dead_worker_are_sent_by_the_next_one(fake_client):
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(3))
    # A worker claimed the rows and died before writing outcomes: its transaction is gone, its lease expired.
    with pytest.raises(RuntimeError), transaction.atomic():
        claimed = sum(len(dispatcher._claim(config, shard, 100)) for shard in range(4))
        assert claimed == 3
        raise RuntimeError("worker killed")
    for shard in range(4):
        DispatchLease.objects.create(
            partner_config=config, shard=shard, owner="dead-worker", until=timezone.now() - timedelta(seconds=1)
        )
    report = dispatcher.dispatch_config(config.pk)
    assert report.outcomes == {Outcome.ADDED: 3}
    assert not Delivery.objects.exists()


def test_a_held_lease_keeps_other_workers_out(fake_client, settings):
    settings.DAP_DISPATCH_SHARDS = 4
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(1))
    for shard in range(4):
        DispatchLease.objects.create(
            partner_config=config, shard=shard, owner="other", until=timezone.now() + timedelta(seconds=60)
        )
    assert dispatcher.dispatch_config(config.pk).lease_busy
    assert fake_client.calls == []


def test_workers_share_a_configuration_by_shard(fake_client, settings):
    settings.DAP_DISPATCH_SHARDS = 4
    config = PartnerConfigFactory()
    profiles = make_profiles(40)
    enqueue(config, profiles)
    # Another worker holds shards 0 and 1: this one sends the profiles of shards 2 and 3 only.
    for shard in (0, 1):
        DispatchLease.objects.create(
            partner_config=config, shard=shard, owner="other", until=timezone.now() + timedelta(seconds=60)
        )
    report = dispatcher.dispatch_config(config.pk)
    sent = {i.profile_id for _, items in fake_client.calls for i in items}
    assert sent == {p.pk for p in profiles if p.pk % 4 in (2, 3)}
    assert not report.lease_busy
    assert Delivery.objects.count() == 40 - len(sent)


def test_a_client_crash_loses_nothing(fake_client):
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(2))

    def boom(action, items):
        raise RuntimeError("bug")

    fake_client.script = boom
    dispatcher.dispatch_config(config.pk)
    assert Delivery.objects.filter(status="pending", partner_error_code="client_error").count() == 2


def test_on_commit_kick(settings, django_capture_on_commit_callbacks, monkeypatch):
    settings.DAP_KICK_ON_COMMIT = True
    kicked = []
    monkeypatch.setattr(outbox, "kick", lambda ids, rows=0: kicked.append(sorted(ids)))
    config = PartnerConfigFactory()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(config, make_profiles(2))
    assert kicked == [[config.pk]]


def test_prune_drops_old_attempts_and_finished_rows(settings):
    from connectors.tasks import prune

    config = PartnerConfigFactory()
    [profile] = make_profiles(1)
    old = timezone.now() - timedelta(days=settings.DAP_ATTEMPT_RETENTION_DAYS + 1)
    DeliveryAttempt.objects.create(partner_config=config, at=old, action="add")
    DeliveryAttempt.objects.create(partner_config=config, at=timezone.now(), action="add")
    Delivery.objects.create(
        partner_config=config, profile=profile, action="add", status="failed", created_at=old, next_attempt_at=old,
        finished_at=old,
    )  # fmt: skip
    assert prune() == {"attempts": 1, "deliveries": 1, "orphans": 0}
    assert DeliveryAttempt.objects.count() == 1


def test_prune_drops_queued_changes_of_deleted_profiles():
    from connectors.tasks import prune

    config = PartnerConfigFactory()
    kept, gone = make_profiles(2)
    enqueue(config, [kept, gone])
    # Deleted in bulk SQL (an import tool, a retention job): the outbox has no database foreign key to profiles, so
    # the queued row stays behind, and could never be claimed.
    gone.identifiers.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audiences_profile WHERE id = %s", [gone.pk])
    assert Delivery.objects.count() == 2
    assert prune()["orphans"] == 1
    assert list(Delivery.objects.values_list("profile_id", flat=True)) == [kept.pk]


def test_dispatch_due_kicks_configs_with_due_work(monkeypatch):
    from connectors import tasks

    kicked = []
    monkeypatch.setattr(outbox, "kick", lambda ids, rows=0: kicked.extend(ids))
    config = PartnerConfigFactory()
    idle = PartnerConfigFactory()
    enqueue(config, make_profiles(1))
    assert tasks.dispatch_due() == 1
    assert kicked == [config.pk] and idle.pk not in kicked


@pytest.fixture
def batched_webhook(monkeypatch, settings):
    """The webhook partner declared as batched: at least 5 rows per send, or whatever waited 10 minutes."""
    from dataclasses import replace

    from connectors.partners import registry

    settings.DAP_DISPATCH_SHARDS = 4
    partner = registry.REGISTRY["webhook"]
    limits = replace(partner.limits, min_batch_size=5, batch_interval_seconds=600)
    monkeypatch.setitem(registry.REGISTRY, "webhook", replace(partner, limits=limits))


def test_batched_partner_rows_wait_for_a_full_batch_then_go_in_one_send(fake_client, batched_webhook):
    config = PartnerConfigFactory()
    profiles = make_profiles(7)
    enqueue(config, profiles[:4])
    report = dispatcher.dispatch_config(config.pk)
    assert report.accumulating and report.claimed == 0 and not fake_client.calls
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 4
    enqueue(config, profiles[4:])
    report = dispatcher.dispatch_config(config.pk)
    assert not report.accumulating and report.outcomes == {Outcome.ADDED: 7}
    # One shard for a partner with a minimum batch: the 7 rows are one send, not split by profile id.
    assert [len(items) for _, items in fake_client.calls] == [7]


def test_batched_partner_rows_go_out_after_the_interval_even_below_the_minimum(fake_client, batched_webhook):
    config = PartnerConfigFactory()
    enqueue(config, make_profiles(2))
    assert dispatcher.dispatch_config(config.pk).accumulating
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    report = dispatcher.dispatch_config(config.pk)
    assert not report.accumulating and report.outcomes == {Outcome.ADDED: 2}


def test_a_configuration_can_choose_its_batch_interval(fake_client, batched_webhook):
    config = PartnerConfigFactory()
    config.settings = {**config.settings, "batch_interval_minutes": 1}
    config.save()
    enqueue(config, make_profiles(2))
    Delivery.objects.update(created_at=timezone.now() - timedelta(seconds=30))
    assert dispatcher.dispatch_config(config.pk).accumulating
    Delivery.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    assert dispatcher.dispatch_config(config.pk).outcomes == {Outcome.ADDED: 2}


def test_actions_a_partner_does_not_sync_are_not_queued():
    """CM360 records conversions: a profile leaving an audience has nothing to send there."""
    config = PartnerConfigFactory(connector__partner_key="google_cm360")
    profiles = make_profiles(3)
    assert enqueue(config, profiles, "remove").pending == 0
    assert not Delivery.objects.exists()
    assert enqueue(config, profiles, "add").pending == 3


def test_changes_for_two_audiences_on_one_configuration_never_replace_each_other(fake_client):
    """A profile entering audience A and leaving audience B, both sent to one configuration: two partner-side
    audiences, two changes — coalescing is per profile and source, not per profile."""
    config = PartnerConfigFactory()
    a = AudienceConnectionFactory(partner_config=config, partner_audience_id="seg-a")
    b = AudienceConnectionFactory(partner_config=config, partner_audience_id="seg-b")
    [profile] = make_profiles(1)
    outbox.audience_members_enqueue(audience_id=b.audience_id, profile_ids=[profile.pk], action="add")
    outbox.audience_members_enqueue(audience_id=a.audience_id, profile_ids=[profile.pk], action="add")
    outbox.audience_members_enqueue(audience_id=b.audience_id, profile_ids=[profile.pk], action="remove")
    assert Delivery.objects.count() == 2  # B's add was replaced by B's remove; A's add stands
    report = dispatcher.dispatch_config(config.pk)
    assert report.outcomes == {Outcome.ADDED: 1, Outcome.REMOVED: 1}
    sent = sorted((action, item.partner_audience_id) for action, items in fake_client.calls for item in items)
    assert sent == [("add", "seg-a"), ("remove", "seg-b")]


def test_a_journey_step_sends_its_partner_audience_id(fake_client):
    from tests.factories import JourneyActivationStepFactory

    config = PartnerConfigFactory()
    step = JourneyActivationStepFactory(partner_config=config, partner_audience_id="journey-seg")
    [profile] = make_profiles(1)
    outbox.deliveries_enqueue(
        partner_config_ids=[config.pk], profile_ids=[profile.pk], action="add", journey_id=step.journey_id
    )
    assert dispatcher.dispatch_config(config.pk).outcomes == {Outcome.ADDED: 1}
    [(_, [item])] = fake_client.calls
    assert item.partner_audience_id == "journey-seg"


def test_a_large_change_fans_out_to_one_task_per_shard_and_small_ones_to_one(settings, monkeypatch):
    """Several workers share a busy configuration: the kick queues one dispatch task per DAP_KICK_ROWS_PER_TASK
    rows, at most one per shard; the minute's schedule does the same from what is due."""
    from connectors import tasks
    from connectors.delivery import outbox

    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, config_id, **kw: queued.append(config_id))
    settings.DAP_DISPATCH_SHARDS = 4
    settings.DAP_KICK_ROWS_PER_TASK = 100
    outbox.kick([7], rows=10)
    assert queued == [7]
    queued.clear()
    outbox.kick([7, 8], rows=250)
    assert queued == [7, 7, 8, 8]
    queued.clear()
    outbox.kick([7], rows=100_000)
    assert queued == [7, 7, 7, 7]
    queued.clear()
    config = PartnerConfigFactory()
    other = PartnerConfigFactory()
    enqueue(config, make_profiles(350))
    enqueue(other, make_profiles(20, prefix="q"))
    queued.clear()
    assert tasks.dispatch_due() == 2
    assert sorted(queued) == sorted([config.pk] * 3 + [other.pk])
