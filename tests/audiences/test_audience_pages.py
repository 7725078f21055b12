"""Audience pages and admin: lists, detail with the rule in words, forms with per-place errors, refresh, static-list
uploads, connections; viewers read only; the admin writes through the services."""

import html
import json

import pytest

from audiences.models import Audience, AudienceConnection, AudienceEntry, AudienceMembership
from connectors.models import Delivery
from tests.audiences.factories import config_for, connect, make_profile, rule_audience, static_audience

pytestmark = pytest.mark.django_db

NL = {"all": [{"attribute": "country", "op": "equals", "value": "NL"}]}


def text(response) -> str:
    return html.unescape(response.content.decode())


@pytest.fixture
def people():
    return [
        make_profile("ann", {"country": "NL"}, email="ann@example.com"),
        make_profile("bob", {"country": "BE"}, email="bob@example.com"),
    ]


def test_anonymous_goes_to_login_and_viewers_read_only(client, viewer, people):
    audience = rule_audience(NL)
    assert client.get("/audiences/").status_code == 302
    client.force_login(viewer)
    page = client.get("/audiences/")
    assert page.status_code == 200 and "New rule-based audience" not in text(page)
    detail = client.get(f"/audiences/{audience.pk}/")
    assert detail.status_code == 200 and "Refresh now" not in text(detail)
    assert client.post(f"/audiences/{audience.pk}/refresh/").status_code == 403
    assert client.get("/audiences/new/").status_code == 403
    assert client.post(f"/audiences/{audience.pk}/delete/").status_code == 403
    assert client.get(f"/audiences/{audience.pk}/connections/new/").status_code == 403
    assert Audience.objects.count() == 1 and not AudienceMembership.objects.exists()


def test_list_and_detail(marketer_client, people):
    audience = rule_audience(
        {"all": [{"attribute": "country", "op": "equals", "value": "NL"},
                 {"any": [{"attribute": "orders", "op": "gte", "value": 3},
                          {"attribute": "tags", "op": "exists", "value": True}]}]},
        name="Loyal Dutch",
    )  # fmt: skip
    static_audience("Uploaded")
    config = config_for("webhook", deactivated=True)
    connect(audience, config, partner_audience_id="loyal")
    page = text(marketer_client.get("/audiences/"))
    assert "Loyal Dutch" in page and "Uploaded" in page and "Static list" in page and "never" in page
    filtered = text(marketer_client.get("/audiences/?kind=static"))
    assert "Uploaded" in filtered and "Loyal Dutch" not in filtered

    detail = text(marketer_client.get(f"/audiences/{audience.pk}/"))
    assert "All of:" in detail and "Any of:" in detail
    assert 'country is "NL"' in detail and "orders is at least 3" in detail and "tags is set" in detail
    assert config.connector.name in detail and "Webhook" in detail and "loyal" in detail and "Deactivated" in detail
    assert "Refresh now" in detail


def test_create_rule_based_with_errors_per_place_then_refresh(marketer_client, people):
    form = marketer_client.get("/audiences/new/?kind=rule_based")
    assert form.status_code == 200 and "Rule (JSON)" in text(form)
    bad_json = marketer_client.post("/audiences/new/", {"kind": "rule_based", "name": "X", "rule": '{"all": [}'})
    assert bad_json.status_code == 400 and "Not valid JSON: line 1, column 10" in text(bad_json)
    rule = {"all": [{"attribute": "country", "op": "near", "value": "NL"}, {"any": []}]}
    bad_rule = marketer_client.post("/audiences/new/", {"kind": "rule_based", "name": "X", "rule": json.dumps(rule)})
    page = text(bad_rule)
    assert bad_rule.status_code == 400
    assert "all[0].op: one of equals" in page and "all[1].any: expected a non-empty list" in page
    assert not Audience.objects.exists()

    created = marketer_client.post("/audiences/new/", {"kind": "rule_based", "name": "Dutch", "rule": json.dumps(NL)})
    audience = Audience.objects.get()
    assert created.status_code == 302 and created["Location"] == f"/audiences/{audience.pk}/"
    refreshed = marketer_client.post(f"/audiences/{audience.pk}/refresh/", follow=True)
    assert "Refreshed: 1 entered, 0 left, 1 members" in text(refreshed)
    assert "1 profiles" in text(refreshed) and "ann" in text(refreshed)  # size and recent enters


def test_edit(marketer_client, people):
    audience = rule_audience(NL, name="Dutch")
    form = text(marketer_client.get(f"/audiences/{audience.pk}/edit/"))
    assert '"country"' in form
    bad = marketer_client.post(f"/audiences/{audience.pk}/edit/", {"name": "", "rule": json.dumps(NL)})
    assert bad.status_code == 400 and "This field is required." in text(bad)
    marketer_client.post(f"/audiences/{audience.pk}/edit/", {"name": "Belgian", "rule": '{"all": [{"attribute": '
                         '"country", "op": "equals", "value": "BE"}]}'})  # fmt: skip
    audience.refresh_from_db()
    assert audience.name == "Belgian" and audience.rule["all"][0]["value"] == "BE"


def test_static_list_upload_with_line_errors(marketer_client, people):
    created = marketer_client.post("/audiences/new/", {"kind": "static", "name": "Uploaded"})
    audience = Audience.objects.get()
    assert created["Location"] == f"/audiences/{audience.pk}/entries/"
    url = f"/audiences/{audience.pk}/entries/"
    bad = marketer_client.post(url, {"slot": "email", "values": "ann@example.com\nnot-an-email\n"})
    assert bad.status_code == 400 and "Line 2: Enter a valid email address" in text(bad)
    assert not AudienceEntry.objects.exists()
    done = marketer_client.post(url, {"slot": "email", "values": "ANN@example.com\n\nnobody@example.com"}, follow=True)
    assert "2 entries added, 0 removed (2 in the list): 1 profiles entered, 0 left." in text(done)
    assert "2 values: 2 email" in text(done)
    assert list(audience.memberships.values_list("profile__external_id", flat=True)) == ["ann"]
    rule_based = rule_audience(NL)
    assert marketer_client.get(f"/audiences/{rule_based.pk}/entries/").status_code == 404


def test_connect_edit_and_delete_with_remove_members(marketer_client, people):
    audience = rule_audience(NL)
    marketer_client.post(f"/audiences/{audience.pk}/refresh/")
    meta = config_for("meta_custom_audiences")
    chooser = text(marketer_client.get(f"/audiences/{audience.pk}/connections/new/"))
    assert meta.connector.name in chooser and "Meta Custom Audiences" in chooser
    form = text(marketer_client.get(f"/audiences/{audience.pk}/connections/new/?config={meta.pk}"))
    assert "Custom audience ID *" in form and "Profile variables" not in form
    url = f"/audiences/{audience.pk}/connections/new/?config={meta.pk}"
    bad = marketer_client.post(url, {"partner_config": meta.pk, "partner_audience_id": "act_1"})
    assert bad.status_code == 400 and "Enter the custom audience ID (digits only)." in text(bad)
    done = marketer_client.post(url, {"partner_config": meta.pk, "partner_audience_id": "2385"}, follow=True)
    assert "Connected: 1 current members queued." in text(done)
    conn = AudienceConnection.objects.get()

    edit_url = f"/audiences/{audience.pk}/connections/{conn.pk}/edit/"
    assert marketer_client.post(edit_url, {"partner_audience_id": "x"}).status_code == 400
    marketer_client.post(edit_url, {"partner_audience_id": "2386"})
    conn.refresh_from_db()
    assert conn.partner_audience_id == "2386"

    delete_url = f"/audiences/{audience.pk}/connections/{conn.pk}/delete/"
    assert "Also remove the current members" in text(marketer_client.get(delete_url))
    removed = marketer_client.post(delete_url, {"remove_members": "on"}, follow=True)
    assert "1 removals queued" in text(removed) and "Removing members" in text(removed)
    assert list(Delivery.objects.values_list("action", flat=True)) == ["remove"]
    marketer_client.post(delete_url, {})
    assert not AudienceConnection.objects.exists()


def test_delete_page_lists_connections_and_refuses(marketer_client, people):
    audience = rule_audience(NL, name="Dutch")
    config = config_for("webhook")
    conn = connect(audience, config)
    page = marketer_client.get(f"/audiences/{audience.pk}/delete/")
    assert config.connector.name in text(page) and "cannot be deleted" in text(page)
    refused = marketer_client.post(f"/audiences/{audience.pk}/delete/")
    assert refused.status_code == 409 and Audience.objects.exists()
    conn.delete()
    assert marketer_client.post(f"/audiences/{audience.pk}/delete/").status_code == 302
    assert not Audience.objects.exists()


# --- admin ----------------------------------------------------------------------------------------------------------


def test_admin_pages_render(admin_site_client, people):
    audience = rule_audience(NL)
    static = static_audience()
    from audiences import services

    services.audience_entries_upload(audience=static, slot="email", values=["ann@example.com"])
    connect(audience, config_for("webhook"))
    services.audience_refresh(audience=audience)
    for url in [
        "/admin/audiences/audience/",
        f"/admin/audiences/audience/{audience.pk}/change/",
        "/admin/audiences/audience/add/",
        "/admin/audiences/audienceconnection/",
        "/admin/audiences/audienceconnection/add/",
        f"/admin/audiences/audienceconnection/{AudienceConnection.objects.get().pk}/change/",
        "/admin/audiences/audiencemembership/",
        "/admin/audiences/audienceentry/",
        "/admin/audiences/profile/",
        f"/admin/audiences/profile/{people[0].pk}/change/",
        "/admin/audiences/profileidentifier/",
    ]:
        response = admin_site_client.get(url)
        assert response.status_code == 200, url
        assert "ann@example.com" not in text(response), url  # identifiers masked
    assert "a•••@example.com" in text(admin_site_client.get("/admin/audiences/profileidentifier/"))
    change_page = text(admin_site_client.get(f"/admin/audiences/audience/{audience.pk}/change/"))
    assert "Recently entered (change log)" in change_page and "ann (" in change_page
    assert admin_site_client.get("/admin/audiences/audiencemembership/add/").status_code == 403


def test_admin_writes_through_the_services(admin_site_client, people):
    bad = admin_site_client.post(
        "/admin/audiences/audience/add/", {"name": "X", "kind": "rule_based", "rule": '{"all": []}'}
    )
    assert bad.status_code == 200 and "all: expected a non-empty list" in text(bad)
    assert not Audience.objects.exists()
    added = admin_site_client.post(
        "/admin/audiences/audience/add/", {"name": "Dutch", "kind": "rule_based", "rule": json.dumps(NL)}
    )
    assert added.status_code == 302
    audience = Audience.objects.get()
    admin_site_client.post(
        "/admin/audiences/audience/", {"action": "refresh_selected", "_selected_action": [audience.pk]}
    )
    assert list(audience.memberships.values_list("profile__external_id", flat=True)) == ["ann"]

    meta = config_for("meta_custom_audiences")
    bad = admin_site_client.post(
        "/admin/audiences/audienceconnection/add/",
        {"audience": audience.pk, "partner_config": meta.pk, "partner_audience_id": "act_1", "profile_variables": ""},
    )
    assert bad.status_code == 200 and "Enter the custom audience ID (digits only)." in text(bad)
    ok = admin_site_client.post(
        "/admin/audiences/audienceconnection/add/",
        {"audience": audience.pk, "partner_config": meta.pk, "partner_audience_id": "2385", "profile_variables": ""},
    )
    assert ok.status_code == 302
    assert list(Delivery.objects.values_list("action", flat=True)) == ["add"]

    conn = AudienceConnection.objects.get()
    guard = text(admin_site_client.get(f"/admin/audiences/audience/{audience.pk}/delete/"))
    assert "connected to" in guard
    admin_site_client.post(
        "/admin/audiences/audienceconnection/",
        {"action": "delete_removing_members", "_selected_action": [conn.pk]},
    )
    assert AudienceConnection.objects.get().is_removing
    assert set(Delivery.objects.values_list("action", flat=True)) == {"remove"}
