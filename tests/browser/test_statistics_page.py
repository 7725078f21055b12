"""In the system Chromium, after demo traffic through the local partner sandbox: the connector page's chart has
data for every category (added, removed, other error, invalid credentials, timeout, partner error), the 7/30/90
switch changes the series, the error-code table and the deactivated label are visible.

Screenshots are kept in test-results/ (DAP_TEST_ARTIFACTS overrides the folder) as the run's artifacts.
"""

import os
import re

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

from django.core.management import call_command  # noqa: E402

from audiences.models import AudienceConnection, Profile, ProfileIdentifier  # noqa: E402
from connectors import services  # noqa: E402
from connectors.delivery import dispatcher, outbox  # noqa: E402
from connectors.models import Connector, DailyStat, PartnerConfig  # noqa: E402
from tests.browser.conftest import ARTIFACTS, PASSWORD  # noqa: E402
from tests.connectors.sandbox_helpers import drain, fault  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

pytestmark = pytest.mark.browser

ERROR_CATEGORIES = ["other_error", "invalid_credentials", "timeout", "partner_error"]


def drain_all() -> None:
    configs = list(PartnerConfig.objects.filter(connector__status=Connector.Status.ACTIVE))
    for _ in range(10):
        if not sum(dispatcher.dispatch_config(c.pk).claimed for c in configs):
            return


def demo_traffic_with_errors(sandbox) -> Connector:
    """The demo delivered through the sandbox, its activity (enters and exits), then on Meta: one round of each error
    category, injected at the sandbox (a partner error code, a stall past the timeout, an expired token) or caused
    by the data (an identifier that is empty once normalised)."""
    call_command("load_demo")
    meta = Connector.objects.get(partner_key="meta_custom_audiences")
    config = meta.configs.get()
    PartnerConfig.objects.filter(pk=config.pk).update(timeout_seconds=0.5)  # a short stall is a timeout
    drain_all()
    from connectors import tasks

    tasks.demo_activity()
    drain_all()
    connection = AudienceConnection.objects.filter(partner_config=config).order_by("id").first()
    slot = meta.partner.identifier_slots_for(config.settings)[0]
    scope = f"demo-{meta.partner_key}"
    fresh = iter(range(1_000_000))

    def new_members(n: int = 4, value=None) -> None:
        profiles = []
        for _ in range(n):
            i = next(fresh)
            profile = Profile.objects.create(external_id=f"browser-{i}", consent_ads=True)
            identifier = (
                value if value is not None else (f"browser{i}@example.com" if slot == "email" else f"+3161{i:07d}")
            )
            ProfileIdentifier.objects.create(profile=profile, slot=slot, value=identifier)
            profiles.append(profile.pk)
        outbox.audience_members_enqueue(audience_id=connection.audience_id, profile_ids=profiles, action="add")
        drain(config)
        return profiles

    fault(sandbox, scope, fault="partner_error", count=1)
    new_members()
    fault(sandbox, scope, fault="slow", delay_s=1.5, count=1)
    new_members()
    new_members(1, value="   ")  # nothing left after normalisation: not sent, an "other error"
    fault(sandbox, scope, fault="expired_token", count=1)
    new_members()
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    services.partner_config_resume(partner_config=config)
    leaving = new_members()  # sending again after the resume
    # Two of them leave the audience: removals (the demo's random activity may have had none for Meta).
    outbox.audience_members_enqueue(audience_id=connection.audience_id, profile_ids=leaving[:2], action="remove")
    drain(config)
    outcomes = set(DailyStat.objects.filter(partner_config=config).values_list("outcome", flat=True))
    assert {"added", "removed", *ERROR_CATEGORIES} <= outcomes, outcomes
    return meta


@pytest.mark.django_db(transaction=True)
def test_the_connector_page_graphs_every_category_and_switches_periods(
    live_server,
    page,
    sandbox,
    monkeypatch,
    settings,
):
    from django.apps import apps

    from connectors.group_permissions import sync_groups

    settings.REDIS_URL = ""
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_RETRY_WINDOW_SECONDS = 0  # a retryable failure (the timeout) is final at once
    monkeypatch.setenv("DAP_SANDBOX_URL", sandbox.url)
    dispatcher._clients.clear()
    sync_groups(apps)
    UserFactory(username="stats-marketer", groups=["Marketing admin"])
    meta = demo_traffic_with_errors(sandbox)

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("stats-marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Server to Server Connectors")).to_be_visible()

    # The list: a sparkline per connector, the deactivated demo connector labelled.
    row = page.locator(f"#connector-table tr[data-connector='{meta.pk}']")
    expect(row.locator("svg.sparkline polyline")).to_have_count(3)
    legacy = Connector.objects.get(status=Connector.Status.DEACTIVATED)
    expect(page.locator(f"#connector-table tr[data-connector='{legacy.pk}'] .label")).to_have_text("Deactivated")
    page.screenshot(path=str(ARTIFACTS / "connector-list.png"), full_page=True)

    # The connector page: the chart drawn by Chart.js with data in every category.
    row.get_by_role("link", name=meta.name).click()
    expect(page.get_by_role("heading", name=meta.name)).to_be_visible()
    canvas = page.locator("#stats-chart")
    expect(canvas).to_have_attribute("data-days", "7")
    totals = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.getElementById('stats-chart'));
            return Object.fromEntries(chart.data.datasets.map(d => [d.outcome, d.data.reduce((a, b) => a + b, 0)]));
        }"""
    )
    assert set(totals) == {"added", "removed", *ERROR_CATEGORIES}
    assert all(n > 0 for n in totals.values()), totals
    stats = DailyStat.objects.filter(partner_config__connector=meta)
    for outcome, n in totals.items():
        assert n == sum(s.count for s in stats if s.outcome == outcome)
    assert page.evaluate("() => Chart.getChart(document.getElementById('stats-chart')).data.labels.length") == 7
    # The error-code table explains each code, with the partner's documentation.
    codes = page.locator("#error-codes tbody tr")
    expect(codes.filter(has_text="invalid_identifier")).to_have_count(1)
    expect(codes.filter(has_text="190")).to_have_count(1)
    expect(codes.filter(has_text="timeout")).to_have_count(1)
    expect(codes.first.get_by_role("link")).to_have_attribute("href", re.compile(r"^https://developers\.facebook\.com"))
    expect(page.locator("#health")).to_contain_text("Healthy")
    expect(page.locator("#attempts tbody tr").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "connector-stats-7-days.png"), full_page=True)

    # The switch reloads the series for 30 and 90 days without leaving the page.
    url = page.url
    for days in (30, 90):
        page.locator(f".periods a[data-days='{days}']").click()
        expect(canvas).to_have_attribute("data-days", str(days))
        labels = page.evaluate("() => Chart.getChart(document.getElementById('stats-chart')).data.labels")
        assert len(labels) == days and labels[-1] == page.evaluate(
            "() => document.getElementById('stats-until').textContent"
        )
        expect(page.locator(f".periods a[data-days='{days}']")).to_have_class(re.compile("current"))
        expect(page).to_have_url(re.compile(rf"days={days}"))
        page.screenshot(path=str(ARTIFACTS / f"connector-stats-{days}-days.png"), full_page=True)
    assert page.url.split("?")[0] == url.split("?")[0]

    # The deactivated connector's page says so.
    page.goto(f"{live_server.url}/connectors/{legacy.pk}/")
    expect(page.locator("#deactivated-label")).to_be_visible()
    expect(page.locator("#health")).to_contain_text("Deactivated")
    page.screenshot(path=str(ARTIFACTS / "connector-deactivated.png"), full_page=True)
