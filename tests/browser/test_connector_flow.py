"""End to end in the system Chromium: create a DV360 connector, add a configuration, deactivate it, try to delete it.

Runs only where Debian's `chromium` is installed (no browser is downloaded). Leaves a screenshot in
test-results/connector-flow.png (the run's artifacts) for a human look.
"""

import os
import re

import pytest

# Playwright's sync API runs an event loop in this thread; the test also uses the ORM from it.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


from connectors.models import Connector  # noqa: E402
from tests.browser.conftest import ARTIFACTS, PASSWORD  # noqa: E402
from tests.factories import (  # noqa: E402
    DV360_CLIENT_SECRET,
    DV360_REFRESH_TOKEN,
    VALID_SETTINGS,
    AudienceConnectionFactory,
    UserFactory,
)

SCREENSHOT = str(ARTIFACTS / "connector-flow.png")
DV360 = VALID_SETTINGS["google_dv360"]
SECOND_SECRET = "GOCSPX-secondConfigSecretValue5555"
SECOND_REFRESH = "1//0secondConfigRefreshTokenValue6666"

pytestmark = pytest.mark.browser


def assert_no_secret(page, *secrets):
    html = page.content()
    for secret in secrets:
        assert secret not in html


@pytest.mark.django_db(transaction=True)
def test_create_configure_deactivate_and_refused_delete(live_server, page):
    # The groups come from a data migration, which an earlier transactional test's flush removed: recreate them
    # (idempotent). A serialized rollback instead clashes with the content types that flush re-creates.
    from django.apps import apps

    from connectors.group_permissions import sync_groups

    sync_groups(apps)
    UserFactory(username="browser-marketer", groups=["Marketing admin"])

    # Log in through the real login page (the list redirects there).
    page.goto(f"{live_server.url}/connectors/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill("browser-marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Server to Server Connectors")).to_be_visible()

    # Catalogue: both kinds, filtered client-side as you type.
    page.get_by_role("link", name="New Connector").click()
    expect(page.get_by_role("heading", name="New Connector", level=1)).to_be_visible()
    tiles = page.locator("#catalogue .tile")
    dv360_tile = tiles.filter(has=page.get_by_text("Google Display & Video 360", exact=True))
    pixel_tile = tiles.filter(has=page.get_by_text("Meta Pixel", exact=True))
    expect(page.locator("#catalogue .tile[data-kind='server_to_server']").first).to_be_visible()
    expect(page.locator("#catalogue .tile[data-kind='tag_based']").first).to_be_visible()
    expect(dv360_tile).to_be_visible()
    expect(pixel_tile).to_be_visible()
    catalogue_url = page.url
    page.get_by_role("searchbox", name="Search partners").press_sequentially("display")
    expect(pixel_tile).to_be_hidden()
    expect(dv360_tile).to_be_visible()
    assert page.url == catalogue_url  # filtered in the page, not by a request
    expect(page.locator("#catalogue-none")).to_be_hidden()
    dv360_tile.click()

    # New connector form: a wrong advertiser id first, then the right one.
    expect(page.get_by_role("heading", name="New Google Display & Video 360 connector")).to_be_visible()
    page.get_by_label("Connector name").fill("DV360 Brand X")
    page.get_by_label("Configuration name").fill("Brand X NL")
    page.get_by_label("Advertiser ID").fill("12x")
    page.get_by_label("OAuth client ID").fill(DV360["client_id"])
    page.get_by_label("OAuth client secret").fill(DV360_CLIENT_SECRET)
    page.get_by_label("OAuth refresh token").fill(DV360_REFRESH_TOKEN)
    page.get_by_role("button", name="Save connector").click()
    expect(page.get_by_role("alert").filter(has_text="Enter the numeric id (digits only).")).to_be_visible()
    assert not Connector.objects.exists()
    assert_no_secret(page, DV360_CLIENT_SECRET, DV360_REFRESH_TOKEN)  # secrets are not echoed back
    page.get_by_label("Advertiser ID").fill(DV360["advertiser_id"])
    # Password inputs come back empty after a refused submit: type them again.
    page.get_by_label("OAuth client secret").fill(DV360_CLIENT_SECRET)
    page.get_by_label("OAuth refresh token").fill(DV360_REFRESH_TOKEN)
    page.get_by_role("button", name="Save connector").click()

    # Connector page: the configuration is listed, its secrets masked.
    expect(page.get_by_role("heading", name="DV360 Brand X")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text='Connector "DV360 Brand X" created.')).to_be_visible()
    config_rows = page.locator("#config-table tbody tr")
    expect(config_rows).to_have_count(1)
    expect(config_rows.first).to_contain_text("Brand X NL")
    expect(config_rows.first).to_contain_text(DV360["advertiser_id"])
    expect(config_rows.first.locator("dd.secret").first).to_contain_text("•••• set")
    assert_no_secret(page, DV360_CLIENT_SECRET, DV360_REFRESH_TOKEN)
    connector = Connector.objects.get(name="DV360 Brand X")
    detail_url = page.url

    # A second configuration.
    page.get_by_role("link", name="Add configuration").click()
    expect(page.get_by_role("heading", name="Add a Google Display & Video 360 configuration")).to_be_visible()
    page.get_by_label("Configuration name").fill("Brand X BE")
    page.get_by_label("Advertiser ID").fill("7654321")
    page.get_by_label("OAuth client ID").fill(DV360["client_id"])
    page.get_by_label("OAuth client secret").fill(SECOND_SECRET)
    page.get_by_label("OAuth refresh token").fill(SECOND_REFRESH)
    page.get_by_role("button", name="Save configuration").click()
    expect(page).to_have_url(detail_url)
    expect(page.get_by_role("status").filter(has_text="Configuration added.")).to_be_visible()
    expect(config_rows).to_have_count(2)
    expect(config_rows.filter(has_text="Brand X NL")).to_have_count(1)
    expect(config_rows.filter(has_text="Brand X BE")).to_have_count(1)
    assert_no_secret(page, DV360_CLIENT_SECRET, DV360_REFRESH_TOKEN, SECOND_SECRET, SECOND_REFRESH)
    assert connector.configs.count() == 2

    # An audience now uses the first configuration.
    AudienceConnectionFactory(partner_config=connector.configs.get(name="Brand X NL"), audience__name="Summer buyers")

    # Deactivate: the confirmation lists who still uses it.
    page.reload()
    page.get_by_role("link", name="Deactivate").click()
    expect(page.get_by_role("heading", name="Deactivate DV360 Brand X?")).to_be_visible()
    expect(page.locator("#usages")).to_contain_text("Summer buyers")
    page.get_by_role("button", name="Deactivate").click()
    expect(page).to_have_url(detail_url)
    expect(page.locator("#deactivated-label")).to_be_visible()
    expect(page.locator("#deactivated-label")).to_have_text("Deactivated")
    expect(page.get_by_role("button", name="Activate")).to_be_visible()
    connector.refresh_from_db()
    assert not connector.is_active

    # The list shows it deactivated too.
    page.get_by_role("link", name="Connectors", exact=True).first.click()
    row = page.locator(f"#connector-table tr[data-connector='{connector.pk}']")
    expect(row).to_contain_text("DV360 Brand X")
    expect(row.locator(".label")).to_have_text("Deactivated")
    expect(row.locator(".label")).to_be_visible()

    # Delete: refused while in use, the usage is listed and there is nothing to confirm.
    row.get_by_role("link", name="DV360 Brand X").click()
    page.locator(".head .actions").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete connector “DV360 Brand X”?")).to_be_visible()
    expect(page.locator("#usages")).to_contain_text("Summer buyers")
    expect(page.locator("main").get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.locator("main form")).to_have_count(0)

    # Posting the confirmation anyway (as a page opened before the audience was connected would) is refused:
    # 409, the reason and the usages, still no form.
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/delete/")) as refused:
        page.evaluate(
            """() => {
                const form = document.createElement('form');
                form.method = 'post';
                form.action = window.location.pathname;
                const token = document.createElement('input');
                token.type = 'hidden';
                token.name = 'csrfmiddlewaretoken';
                token.value = document.querySelector('input[name=csrfmiddlewaretoken]').value;
                form.appendChild(token);
                document.body.appendChild(form);
                form.submit();
            }"""
        )
    assert refused.value.status == 409
    page.wait_for_load_state()
    expect(page.locator("#delete-refused")).to_be_visible()
    expect(page.locator("#usages")).to_contain_text("Summer buyers")
    expect(page.locator("main form")).to_have_count(0)
    expect(page.locator("main").get_by_role("button", name="Delete")).to_have_count(0)
    assert Connector.objects.filter(pk=connector.pk).exists()
    assert connector.configs.count() == 2

    page.screenshot(path=SCREENSHOT, full_page=True)
