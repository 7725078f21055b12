"""The statistics on the pages: the list's last-7-days sparklines, the connector page's chart data, totals, error
codes, health, the delivery log (recent partner calls, failed deliveries) and replaying failed deliveries."""

import json
import re
from datetime import timedelta

import pytest

from connectors.delivery.stats import stats_day
from connectors.models import Delivery
from tests.factories import (
    ALL_TEST_SECRETS,
    ConnectorFactory,
    DailyStatFactory,
    DeliveryAttemptFactory,
    DeliveryFactory,
    PartnerConfigFactory,
)

pytestmark = pytest.mark.django_db


def chart_data(html: str) -> dict:
    match = re.search(r'<script id="stats-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the chart's data is embedded in the page"
    return json.loads(match.group(1))


@pytest.fixture
def meta():
    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences", connector__name="Meta", name="NL")
    today = stats_day()
    for offset, outcome, code, n in [
        (0, "added", "", 30),
        (1, "added", "", 10),
        (1, "removed", "", 4),
        (2, "other_error", "invalid_identifier", 1),
        (3, "invalid_credentials", "190", 2),
        (4, "timeout", "timeout", 3),
        (0, "partner_error", "2650", 5),
        (0, "skipped_no_identifier", "", 6),
        (20, "added", "", 1000),
    ]:
        DailyStatFactory(
            partner_config=config,
            day=today - timedelta(days=offset),
            outcome=outcome,
            partner_error_code=code,
            count=n,
        )
    return config.connector


def test_the_list_shows_last_7_days_totals_and_a_sparkline_per_connector(marketer_client, meta):
    quiet = ConnectorFactory(name="Quiet", partner_key="webhook")
    html = marketer_client.get("/connectors/").content.decode()
    row = re.search(rf'<tr data-connector="{meta.pk}">(.*?)</tr>', html, re.S).group(1)
    assert '<td class="num added">40</td>' in row and '<td class="num removed">4</td>' in row
    assert '<td class="num errors">11</td>' in row
    svg = re.search(r"<svg class=\"sparkline\".*?</svg>", row, re.S).group(0)
    # Three lines (added, removed, errors) of seven points each; the title says the numbers, oldest first.
    assert svg.count("<polyline") == 3
    points = re.findall(r'class="spark-(\w+)"[^>]*points="([^"]+)"', svg)
    assert [name for name, _ in points] == ["added", "removed", "errors"]
    assert all(len(p.split()) == 7 for _, p in points)
    assert "added: 0, 0, 0, 0, 0, 10, 30" in svg and "errors: 0, 0, 3, 2, 1, 0, 5" in svg
    # The highest point (30 added today) touches the top; zero days lie on the baseline.
    added = [tuple(map(float, p.split(","))) for p in points[0][1].split()]
    assert added[-1][1] == 2.0 and added[0][1] == 26.0
    quiet_row = re.search(rf'<tr data-connector="{quiet.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "added: 0, 0, 0, 0, 0, 0, 0" in quiet_row


def test_the_list_marks_paused_connectors(marketer_client):
    config = PartnerConfigFactory(health="credentials_invalid")
    html = marketer_client.get("/connectors/").content.decode()
    row = re.search(rf'<tr data-connector="{config.connector_id}">(.*?)</tr>', html, re.S).group(1)
    assert ">Paused</span>" in row


def test_the_connector_page_charts_every_category_for_the_chosen_period(marketer_client, meta):
    html = marketer_client.get(f"/connectors/{meta.pk}/").content.decode()
    data = chart_data(html)
    assert data["days"] == 7 and len(data["dates"]) == 7 and data["dates"][-1] == stats_day().isoformat()
    assert data["api"] == f"/api/v1/connectors/{meta.pk}/stats/"
    series = {s["outcome"]: s for s in data["series"]}
    assert list(series) == ["added", "removed", "other_error", "invalid_credentials", "timeout", "partner_error"]
    assert series["added"]["data"] == [0, 0, 0, 0, 0, 10, 30] and series["added"]["colour"] == "#1f8a4c"
    assert series["removed"]["data"] == [0, 0, 0, 0, 0, 4, 0] and series["removed"]["colour"] == "#2a6fd6"
    assert series["timeout"]["data"] == [0, 0, 3, 0, 0, 0, 0]
    assert series["invalid_credentials"]["data"] == [0, 0, 0, 2, 0, 0, 0]
    assert series["other_error"]["data"] == [0, 0, 0, 0, 1, 0, 0]
    assert series["partner_error"]["data"] == [0, 0, 0, 0, 0, 0, 5]
    assert len({s["colour"] for s in data["series"]}) == 6  # one colour each
    assert '<td class="num" data-category="skipped">6</td>' in html
    assert '<td class="num" data-outcome="skipped_no_identifier">6</td>' in html
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in html
    thirty = chart_data(marketer_client.get(f"/connectors/{meta.pk}/?days=30").content.decode())
    assert len(thirty["dates"]) == 30 and sum(thirty["series"][0]["data"]) == 1040
    # Anything else is the default period, not an error page.
    assert chart_data(marketer_client.get(f"/connectors/{meta.pk}/?days=5").content.decode())["days"] == 7
    assert chart_data(marketer_client.get(f"/connectors/{meta.pk}/?days=x").content.decode())["days"] == 7


def test_the_error_code_table_lists_meaning_and_documentation(marketer_client, meta):
    html = marketer_client.get(f"/connectors/{meta.pk}/").content.decode()
    table = re.search(r'<table class="grid" id="error-codes">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr><td>(.*?)</td><td><code>(.*?)</code></td><td class=\"num\">(\d+)</td>", table)
    assert rows == [
        ("Partner error", "2650", "5"),
        ("Timeout", "timeout", "3"),
        ("Invalid credentials", "190", "2"),
        ("Other error", "invalid_identifier", "1"),
    ]
    assert "https://developers.facebook.com/docs/graph-api/guides/error-handling/" in table


def test_health_says_healthy_paused_or_deactivated(marketer_client):
    config = PartnerConfigFactory(name="Main")
    url = f"/connectors/{config.connector_id}/"
    assert 'class="health health-ok"' in marketer_client.get(url).content.decode()
    config.health = "credentials_invalid"
    config.save()
    html = marketer_client.get(url).content.decode()
    assert 'class="health health-paused"' in html and "Main: Credentials invalid (paused)" in html
    config.connector.status = "deactivated"
    config.connector.save()
    assert 'class="health health-deactivated"' in marketer_client.get(url).content.decode()


def test_the_delivery_log_lists_recent_calls_and_filters_them(marketer_client):
    config = PartnerConfigFactory(name="NL")
    other = PartnerConfigFactory(connector=config.connector, name="BE")
    DeliveryAttemptFactory(partner_config=config, status_code=200, snippet="ok-call")
    DeliveryAttemptFactory(
        partner_config=other,
        status_code=500,
        ok_count=0,
        retry_count=10,
        outcome="partner_error",
        partner_error_code="500",
        snippet="server-storm",
    )
    DeliveryAttemptFactory(partner_config=PartnerConfigFactory(), snippet="someone-else")
    url = f"/connectors/{config.connector_id}/"
    html = marketer_client.get(url).content.decode()
    assert "ok-call" in html and "server-storm" in html and "someone-else" not in html
    errors_only = marketer_client.get(url, {"log": "1", "errors_only": "on"}).content.decode()
    assert "server-storm" in errors_only and "ok-call" not in errors_only
    by_config = marketer_client.get(url, {"log": "1", "config": config.pk}).content.decode()
    assert "ok-call" in by_config and "server-storm" not in by_config
    # A filter value that is not valid shows everything rather than failing.
    bogus = marketer_client.get(url, {"log": "1", "config": "999999", "outcome": "nope"})
    assert bogus.status_code == 200 and "ok-call" in bogus.content.decode()


def test_failed_deliveries_are_listed_and_replayed_selected_or_by_filter(marketer_client):
    config = PartnerConfigFactory(name="NL")
    other = PartnerConfigFactory(connector=config.connector, name="BE")
    a = DeliveryFactory(partner_config=config, outcome="timeout", partner_error_code="timeout")
    b = DeliveryFactory(partner_config=config)
    c = DeliveryFactory(partner_config=other)
    elsewhere = DeliveryFactory()
    url = f"/connectors/{config.connector_id}/"
    html = marketer_client.get(url).content.decode()
    assert all(f'data-delivery="{d.pk}"' in html for d in (a, b, c)) and f'data-delivery="{elsewhere.pk}"' not in html
    replay = f"/connectors/{config.connector_id}/replay/"

    # Selected: only the ticked row of this connector (a row of another connector is ignored).
    marketer_client.post(replay, {"replay": "selected", "ids": [a.pk, elsewhere.pk]})
    assert Delivery.objects.get(pk=a.pk).status == "pending"
    assert Delivery.objects.get(pk=elsewhere.pk).status == "failed"
    assert Delivery.objects.get(pk=b.pk).status == "failed"

    # "Selected" with nothing ticked replays nothing; bad ids are refused; nothing changes.
    response = marketer_client.post(replay, {"replay": "selected"}, follow=True)
    assert "tick the deliveries to replay" in response.content.decode()
    response = marketer_client.post(replay, {"replay": "selected", "ids": ["1; DROP"]}, follow=True)
    assert "Delivery ids are whole numbers." in response.content.decode()
    assert Delivery.objects.filter(status="failed").count() == 3

    # All matching a filter: the BE configuration only.
    marketer_client.post(replay, {"replay": "all", "config": other.pk})
    assert Delivery.objects.get(pk=c.pk).status == "pending" and Delivery.objects.get(pk=b.pk).status == "failed"
    # All.
    marketer_client.post(replay, {"replay": "all"})
    assert Delivery.objects.get(pk=b.pk).status == "pending"
    assert Delivery.objects.get(pk=elsewhere.pk).status == "failed"


def test_viewers_see_the_log_but_cannot_replay(client, viewer):
    row = DeliveryFactory()
    client.force_login(viewer)
    html = client.get(f"/connectors/{row.partner_config.connector_id}/").content.decode()
    assert f'data-delivery="{row.pk}"' in html and 'name="ids"' not in html and "Replay all" not in html
    response = client.post(f"/connectors/{row.partner_config.connector_id}/replay/", {"replay": "all"})
    assert response.status_code == 403
    assert Delivery.objects.get(pk=row.pk).status == "failed"


def test_the_page_never_shows_a_configurations_secret(marketer_client):
    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    DeliveryAttemptFactory(partner_config=config, status_code=401, snippet="token refused")
    html = marketer_client.get(f"/connectors/{config.connector_id}/").content.decode()
    for secret in ALL_TEST_SECRETS:
        assert secret not in html


def test_open_alerts_show_on_the_list_and_on_their_connectors_page(marketer_client):
    from django.utils import timezone

    from monitoring.models import Alert

    config = PartnerConfigFactory(connector__name="Broken Meta", name="NL", health="credentials_invalid")
    calm = PartnerConfigFactory(connector__name="Calm")
    alert = Alert.objects.create(
        partner_config=config, kind="credentials_invalid", detail="The partner refused", opened_at=timezone.now()
    )
    listing = marketer_client.get("/connectors/").content.decode()
    assert f'data-alert-id="{alert.pk}"' in listing and "Credentials invalid" in listing
    page = marketer_client.get(f"/connectors/{config.connector_id}/").content.decode()
    assert f'data-alert-id="{alert.pk}"' in page and "The partner refused" in page
    assert "data-alert-id" not in marketer_client.get(f"/connectors/{calm.connector_id}/").content.decode()
    alert.resolved_at = timezone.now()
    alert.save()
    assert "data-alert-id" not in marketer_client.get("/connectors/").content.decode()
