"""The statistics API and selectors: daily series per outcome and per partner error code, totals, zero days, the
periods, per configuration and for all connectors, the day boundary's time zone."""

from datetime import UTC, date, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from connectors.delivery.stats import stats_day
from connectors.models import Outcome
from connectors.statistics import stats_overview, stats_period
from tests.factories import ConnectorFactory, DailyStatFactory, PartnerConfigFactory

pytestmark = pytest.mark.django_db


def day(offset: int) -> date:
    """Today (in the statistics time zone) minus `offset` days."""
    return stats_day() - timedelta(days=offset)


@pytest.fixture
def meta():
    """A Meta connector with two configurations and a spread of outcomes over 100 days."""
    first = PartnerConfigFactory(connector__partner_key="meta_custom_audiences", connector__name="Meta", name="NL")
    second = PartnerConfigFactory(connector=first.connector, name="BE")
    rows = [
        (first, 0, "added", "", 40),
        (second, 0, "added", "", 5),
        (first, 1, "added", "", 2),
        (first, 1, "removed", "", 7),
        (first, 3, "skipped_no_identifier", "", 4),
        (second, 3, "skipped_no_consent", "", 1),
        (first, 0, "partner_error", "2650", 3),
        (second, 0, "partner_error", "2650", 2),
        (first, 2, "partner_error", "100/33", 5),
        (first, 2, "timeout", "timeout", 6),
        (second, 5, "invalid_credentials", "190", 9),
        (first, 6, "other_error", "invalid_identifier", 1),
        (first, 7, "added", "", 100),  # outside 7 days, inside 30
        (first, 29, "removed", "", 10),  # the 30th day
        (first, 30, "removed", "", 1000),  # outside 30, inside 90
        (first, 89, "added", "", 20000),  # the 90th day
        (first, 90, "added", "", 500000),  # outside every period
    ]
    for config, offset, outcome, code, n in rows:
        DailyStatFactory(partner_config=config, day=day(offset), outcome=outcome, partner_error_code=code, count=n)
    return first.connector


def test_the_seven_day_series_is_aligned_with_the_dates_and_days_without_traffic_are_zero(api, meta):
    body = api.get(f"/api/v1/connectors/{meta.pk}/stats/?days=7").json()
    assert body["days"] == 7 and body["time_zone"] == "UTC"
    assert body["dates"] == [day(i).isoformat() for i in range(6, -1, -1)]
    assert body["since"] == day(6).isoformat() and body["until"] == day(0).isoformat()
    series = body["series"]
    # Oldest first: index 6 is today, index 5 yesterday.
    assert series["added"] == [0, 0, 0, 0, 0, 2, 45]
    assert series["removed"] == [0, 0, 0, 0, 0, 7, 0]
    assert series["partner_error"] == [0, 0, 0, 0, 5, 0, 5]
    assert series["timeout"] == [0, 0, 0, 0, 6, 0, 0]
    assert series["invalid_credentials"] == [0, 9, 0, 0, 0, 0, 0]
    assert series["other_error"] == [1, 0, 0, 0, 0, 0, 0]
    assert series["skipped_no_identifier"] == [0, 0, 0, 4, 0, 0, 0]
    assert series["skipped_deactivated"] == [0] * 7
    # Every outcome has a series, every series a value per date.
    assert set(series) == set(Outcome.values)
    assert all(len(values) == 7 for values in series.values())
    # Totals are the sums of the series; categories the sums of their outcomes.
    assert body["by_outcome"] == {o: sum(v) for o, v in series.items()}
    assert body["totals"] == {"added": 47, "removed": 7, "skipped": 5, "errors": 1 + 9 + 6 + 10}
    # The same numbers per day.
    assert [d["day"] for d in body["by_day"]] == body["dates"]
    assert [d["outcomes"]["added"] for d in body["by_day"]] == series["added"]


def test_partner_error_codes_have_their_own_series_meaning_and_docs(api, meta):
    errors = api.get(f"/api/v1/connectors/{meta.pk}/stats/").json()["partner_errors"]
    by_code = {(e["outcome"], e["code"]): e for e in errors}
    assert set(by_code) == {
        ("partner_error", "2650"),
        ("partner_error", "100/33"),
        ("timeout", "timeout"),
        ("invalid_credentials", "190"),
        ("other_error", "invalid_identifier"),
    }
    assert by_code[("partner_error", "2650")]["series"] == [0, 0, 0, 0, 0, 0, 5]
    assert by_code[("partner_error", "100/33")]["series"] == [0, 0, 0, 0, 5, 0, 0]
    # Most frequent first; each row's count is its series' sum.
    assert [e["count"] for e in errors] == sorted((e["count"] for e in errors), reverse=True)
    assert all(e["count"] == sum(e["series"]) for e in errors)
    # The partner codes of one outcome add up to that outcome's series.
    pe = [sum(x) for x in zip(*(e["series"] for e in errors if e["outcome"] == "partner_error"), strict=True)]
    assert pe == [0, 0, 0, 0, 5, 0, 5]
    token = by_code[("invalid_credentials", "190")]
    assert token["meaning"] and token["docs_url"].startswith("https://developers.facebook.com")


@pytest.mark.parametrize(
    ("days", "added", "removed"),
    [(7, 47, 7), (30, 147, 17), (90, 20147, 1017)],
)
def test_each_period_counts_exactly_its_days(api, meta, days, added, removed):
    body = api.get(f"/api/v1/connectors/{meta.pk}/stats/?days={days}").json()
    assert len(body["dates"]) == days and body["dates"][0] == day(days - 1).isoformat()
    assert body["totals"]["added"] == added and body["totals"]["removed"] == removed
    assert sum(body["series"]["added"]) == added


def test_statistics_of_one_configuration(api, meta):
    be = meta.configs.get(name="BE")
    body = api.get(f"/api/v1/connectors/{meta.pk}/configs/{be.pk}/stats/?days=7").json()
    assert body["partner_config_id"] == be.pk
    assert body["series"]["added"] == [0, 0, 0, 0, 0, 0, 5]
    assert body["totals"] == {"added": 5, "removed": 0, "skipped": 1, "errors": 11}
    assert [(e["code"], e["series"]) for e in body["partner_errors"]] == [
        ("190", [0, 9, 0, 0, 0, 0, 0]),
        ("2650", [0, 0, 0, 0, 0, 0, 2]),
    ]
    # Both configurations add up to the connector.
    nl = meta.configs.get(name="NL")
    whole = api.get(f"/api/v1/connectors/{meta.pk}/stats/?days=30").json()["series"]
    parts = [api.get(f"/api/v1/connectors/{meta.pk}/configs/{c.pk}/stats/?days=30").json()["series"] for c in (nl, be)]
    for outcome, values in whole.items():
        assert values == [a + b for a, b in zip(parts[0][outcome], parts[1][outcome], strict=True)]


def test_a_configuration_of_another_connector_is_not_found(api, meta):
    other = PartnerConfigFactory()
    assert api.get(f"/api/v1/connectors/{meta.pk}/configs/{other.pk}/stats/").status_code == 404
    assert api.get("/api/v1/connectors/999999/stats/").status_code == 404


def test_the_overview_lists_every_connector_with_totals_and_category_series(api, meta):
    quiet = ConnectorFactory(name="Quiet webhook", partner_key="webhook")
    other = PartnerConfigFactory(connector__name="Xandr", connector__partner_key="xandr")
    DailyStatFactory(partner_config=other, day=day(0), outcome="added", count=11)
    DailyStatFactory(partner_config=other, day=day(2), outcome="timeout", partner_error_code="timeout", count=3)
    body = api.get("/api/v1/connectors/stats/?days=7").json()
    rows = {c["name"]: c for c in body["connectors"]}
    assert list(rows) == ["Meta", "Quiet webhook", "Xandr"]  # by name
    assert rows["Meta"]["partner"] == "meta_custom_audiences" and rows["Meta"]["partner_name"]
    assert rows["Meta"]["totals"] == {"added": 47, "removed": 7, "skipped": 5, "errors": 26}
    assert rows["Meta"]["series"] == {
        "added": [0, 0, 0, 0, 0, 2, 45],
        "removed": [0, 0, 0, 0, 0, 7, 0],
        "skipped": [0, 0, 0, 5, 0, 0, 0],
        "errors": [1, 9, 0, 0, 11, 0, 5],
    }
    assert rows["Quiet webhook"]["totals"] == {"added": 0, "removed": 0, "skipped": 0, "errors": 0}
    assert rows["Quiet webhook"]["series"]["added"] == [0] * 7 and rows["Quiet webhook"]["id"] == quiet.pk
    assert rows["Xandr"]["series"]["errors"] == [0, 0, 0, 0, 3, 0, 0]
    # The grand series is the sum of the connectors' series.
    assert body["series"]["added"] == [0, 0, 0, 0, 0, 2, 56]
    assert body["totals"] == {"added": 58, "removed": 7, "skipped": 5, "errors": 29}
    ninety = api.get("/api/v1/connectors/stats/?days=90").json()
    assert {c["name"]: c["totals"]["added"] for c in ninety["connectors"]} == {
        "Meta": 20147,
        "Quiet webhook": 0,
        "Xandr": 11,
    }


def test_the_overview_leaves_out_tag_based_partners_and_takes_a_queryset():
    from connectors.models import Connector

    tag = ConnectorFactory(name="A pixel", partner_key="meta_pixel")
    kept = ConnectorFactory(name="Kept", partner_key="webhook")
    names = [c["name"] for c in stats_overview(days=7)["connectors"]]
    assert "A pixel" not in names and "Kept" in names
    only = stats_overview(days=7, connectors=Connector.objects.filter(pk=kept.pk))
    assert [c["id"] for c in only["connectors"]] == [kept.pk]
    assert tag.pk not in [c["id"] for c in only["connectors"]]


@pytest.mark.parametrize("bad", ["5", "0", "-7", "7.0", "seven", "", "365", "07x"])
@pytest.mark.parametrize("path", ["/api/v1/connectors/{c}/stats/", "/api/v1/connectors/stats/", "config"])
def test_any_other_period_is_refused_with_a_field_message(api, meta, bad, path):
    if path == "config":
        path = f"/api/v1/connectors/{{c}}/configs/{meta.configs.first().pk}/stats/"
    response = api.get(path.format(c=meta.pk), {"days": bad})
    assert response.status_code == 400
    assert "days" in response.json()


def test_viewers_may_read_statistics_and_anonymous_users_may_not(viewer_api, meta):
    assert viewer_api.get(f"/api/v1/connectors/{meta.pk}/stats/").status_code == 200
    assert viewer_api.get("/api/v1/connectors/stats/").status_code == 200
    anonymous = APIClient()
    assert anonymous.get(f"/api/v1/connectors/{meta.pk}/stats/").status_code in (401, 403)
    assert anonymous.get("/api/v1/connectors/stats/").status_code in (401, 403)


def test_the_day_boundary_follows_the_statistics_time_zone(settings):
    moment = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)
    assert stats_day(moment) == date(2026, 3, 10)
    settings.DAP_STATS_TIME_ZONE = "Europe/Amsterdam"  # UTC+1 in March
    assert stats_day(moment) == date(2026, 3, 10)
    assert stats_day(moment + timedelta(hours=1)) == date(2026, 3, 11)  # 23:30 UTC is already the 11th there
    settings.DAP_STATS_TIME_ZONE = "America/New_York"  # UTC-4 in March (DST since the 8th)
    assert stats_day(datetime(2026, 3, 11, 3, 59, tzinfo=UTC)) == date(2026, 3, 10)
    assert stats_day(datetime(2026, 3, 11, 4, 0, tzinfo=UTC)) == date(2026, 3, 11)


def test_the_period_ends_on_today_in_the_statistics_time_zone(settings, monkeypatch):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 6, 30, 23, 0, tzinfo=UTC))
    assert stats_period(7).until == date(2026, 6, 30)
    settings.DAP_STATS_TIME_ZONE = "Asia/Tokyo"
    period = stats_period(7)
    assert (period.since, period.until) == (date(2026, 6, 25), date(2026, 7, 1))


def test_deliveries_are_counted_on_the_statistics_day(settings, monkeypatch):
    """The writers (here a skip of a deactivated connector at enqueue) use the same day as the readers."""
    from django.utils import timezone

    from audiences.models import Profile
    from connectors.delivery import outbox
    from connectors.models import DailyStat

    settings.DAP_STATS_TIME_ZONE = "Pacific/Auckland"  # UTC+13 in January
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    config = PartnerConfigFactory(connector__status="deactivated")
    profile = Profile.objects.create(external_id="p1")
    outbox.deliveries_enqueue(partner_config_ids=[config.pk], profile_ids=[profile.pk], action="add")
    stat = DailyStat.objects.get(partner_config=config)
    assert (stat.day, stat.outcome, stat.count) == (date(2026, 1, 16), "skipped_deactivated", 1)
