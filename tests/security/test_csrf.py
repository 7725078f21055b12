"""CSRF: every state-changing page form is refused without the token (403, nothing changed) and accepted with it;
session-authenticated API writes need the token too (DRF's SessionAuthentication), token-authenticated ones do not.
Clients here enforce the checks (Django's test client skips them by default)."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from connectors.models import Connector
from tests.security.conftest import role_client
from tests.security.routes import all_routes
from tests.security.test_authorization_matrix import EXPECTED, KWARGS

pytestmark = pytest.mark.django_db

# Page routes whose POST changes something (each needs the token), and the read-only pages (GET forms, lists).
STATE_CHANGING = [
    "logout",
    "connectors:new",
    "connectors:edit",
    "connectors:deactivate",
    "connectors:activate",
    "connectors:delete",
    "connectors:config_add",
    "connectors:config_edit",
    "connectors:config_delete",
    "connectors:config_test",
    "connectors:config_resume",
    "connectors:replay",
    "audiences:new",
    "audiences:edit",
    "audiences:delete",
    "audiences:refresh",
    "audiences:entries",
    "audiences:connection_add",
    "audiences:connection_edit",
    "audiences:connection_delete",
    "journeys:new",
    "journeys:edit",
    "journeys:publish",
    "journeys:pause",
    "journeys:resume",
    "journeys:stop",
    "journeys:delete",
]
READ_ONLY_PAGES = {
    "/",
    "login",  # checked on its own below: a login form is protected too (login CSRF)
    "connectors:list",
    "connectors:catalogue",
    "connectors:detail",
    "audiences:list",
    "audiences:detail",
    "journeys:list",
    "journeys:detail",
    "cookie-sync",
    "healthz",
    "metrics",
}


def _page_routes():
    return {r.key: r for r in all_routes() if not r.route.startswith(("api/", "admin/"))}


def test_every_page_route_is_classified():
    """A new page needs a decision: state-changing (CSRF-checked below) or read-only."""
    pages = set(_page_routes())
    assert pages == set(STATE_CHANGING) | READ_ONLY_PAGES


def test_every_post_form_in_the_templates_carries_the_token():
    forms = 0
    for path in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<form\b([^>]*)>(.*?)</form>", text, re.S | re.I):
            if re.search(r'method\s*=\s*"post"', match.group(1), re.I):
                forms += 1
                assert "{% csrf_token %}" in match.group(2), f"{path.name}: a POST form without {{% csrf_token %}}"
    assert forms >= 15


def _token(client) -> str:
    """The token a browser gets: the CSRF cookie set by rendering a page with a form."""
    client.get(reverse("connectors:list"))
    return client.cookies[settings.CSRF_COOKIE_NAME].value


@pytest.mark.parametrize("key", STATE_CHANGING)
def test_page_form_needs_the_csrf_token(world, key):
    route = _page_routes()[key]
    url = route.url(**(KWARGS[key](world) if key in KWARGS else {}))
    client = role_client("marketer", world, enforce_csrf_checks=True)
    before = Connector.objects.values_list("pk", "status", "name").order_by("pk")
    before = list(before)

    refused = client.post(url, {"name": "Changed by a forged form"})
    assert refused.status_code == 403
    assert b"CSRF" in refused.content
    assert list(Connector.objects.values_list("pk", "status", "name").order_by("pk")) == before

    token = _token(client)
    accepted = client.post(url, {"csrfmiddlewaretoken": token})
    # The view's own answer: done (302), the form again with errors (200/400), refused as in use (409).
    assert accepted.status_code in (200, 302, 400, 409)
    assert EXPECTED[key]["POST"][2] != 403  # and the matrix agrees the marketing admin may post there


def test_a_forged_deactivation_changes_nothing_and_the_real_one_does(world):
    client = role_client("marketer", world, enforce_csrf_checks=True)
    url = reverse("connectors:deactivate", args=[world.connector])
    assert client.post(url).status_code == 403
    assert Connector.objects.get(pk=world.connector).status == Connector.Status.ACTIVE
    assert client.post(url, {"csrfmiddlewaretoken": _token(client)}).status_code == 302
    assert Connector.objects.get(pk=world.connector).status == Connector.Status.DEACTIVATED


def test_a_token_from_another_session_is_refused(world):
    other = role_client("marketer", world, enforce_csrf_checks=True)
    stolen = _token(other)
    client = role_client("marketer", world, enforce_csrf_checks=True)
    client.get(reverse("connectors:list"))  # its own cookie
    url = reverse("connectors:deactivate", args=[world.connector])
    assert client.post(url, {"csrfmiddlewaretoken": "x" * 64}).status_code == 403
    if client.cookies[settings.CSRF_COOKIE_NAME].value != stolen:
        assert client.post(url, {"csrfmiddlewaretoken": stolen}).status_code == 403


def test_login_form_needs_the_token(world):
    client = role_client("anonymous", world, enforce_csrf_checks=True)
    assert client.post(reverse("login"), {"username": "sec-viewer", "password": "pass-word-123"}).status_code == 403
    client.get(reverse("login"))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        reverse("login"), {"username": "sec-viewer", "password": "pass-word-123", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


def test_admin_forms_need_the_token(world):
    client = role_client("superuser", world, enforce_csrf_checks=True)
    url = reverse("admin:connectors_connector_change", args=[world.connector])
    assert client.post(url, {"name": "Forged"}).status_code == 403
    assert Connector.objects.get(pk=world.connector).name != "Forged"
    client.get(url)
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post(url, {"name": "Renamed", "csrfmiddlewaretoken": token}).status_code == 302
    assert Connector.objects.get(pk=world.connector).name == "Renamed"


# --- API ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/connectors/{connector}/deactivate/", None),
        ("patch", "/api/v1/connectors/{connector}/", {"name": "Renamed"}),
        ("post", "/api/v1/audiences/", {"name": "New", "rule": None}),
        ("post", "/api/v1/profiles/bulk/", {"profiles": [{"external_id": "csrf-1"}]}),
        ("delete", "/api/v1/audiences/{audience}/connections/{connection}/", None),
    ],
)
def test_session_authenticated_api_writes_need_the_token(world, method, path, body):
    url = path.format(connector=world.connector, audience=world.audience, connection=world.connection)
    client = role_client("marketer", world, enforce_csrf_checks=True)
    send = getattr(client, method)
    refused = send(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    token = _token(client)
    accepted = send(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert accepted.status_code not in (401, 403), accepted.content


def test_session_authenticated_api_reads_need_no_token(world):
    client = role_client("viewer", world, enforce_csrf_checks=True)
    assert client.get("/api/v1/connectors/").status_code == 200


def test_token_authenticated_api_writes_need_no_csrf_token(world):
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user_id=world.users["marketer"]).key
    client = role_client("anonymous", world, enforce_csrf_checks=True)
    response = client.post(
        f"/api/v1/connectors/{world.connector}/deactivate/",
        content_type="application/json",
        headers={"Authorization": f"Token {key}"},
    )
    assert response.status_code == 200
    assert Connector.objects.get(pk=world.connector).status == Connector.Status.DEACTIVATED
