"""Cookie sync: `/sync/<partner>/` stores the partner's user id on the profile the signed token names; anything
invalid is refused with nothing written; the API mints the tokens."""

import pytest
from django.core import signing
from rest_framework.test import APIClient

from audiences.models import Profile, ProfileIdentifier
from connectors import cookie_sync

pytestmark = pytest.mark.django_db

URL = "/sync/xandr_cookie_sync/"


@pytest.fixture
def xandr_sync():
    """Tag-based entries are not stored connectors: the endpoint serves every partner that declares a sync."""
    return "xandr_cookie_sync"


@pytest.fixture
def profile():
    return Profile.objects.create(external_id="visitor-1")


def sync(client, token, uid="8123456789012345678", **extra):
    return client.get(URL, {"p": token, "uid": uid, **extra})


def xandr_ids(profile):
    return list(ProfileIdentifier.objects.filter(profile=profile, slot="xandr_uid").values_list("value", flat=True))


def test_sync_stores_the_partner_id_and_answers_a_pixel(client, xandr_sync, profile):
    response = sync(client, cookie_sync.sync_token(profile=profile))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif" and response.content.startswith(b"GIF89a")
    assert response["Cache-Control"] == "no-store"
    assert xandr_ids(profile) == ["8123456789012345678"]
    # Again with a new id: one value per slot, the newest wins.
    assert sync(client, cookie_sync.sync_token(profile=profile), uid="42").status_code == 200
    assert xandr_ids(profile) == ["42"]


def test_an_id_seen_on_another_profile_moves_to_this_one(client, xandr_sync, profile):
    other = Profile.objects.create(external_id="visitor-2")
    ProfileIdentifier.objects.create(profile=other, slot="xandr_uid", value="777")
    assert sync(client, cookie_sync.sync_token(profile=profile), uid="777").status_code == 200
    assert xandr_ids(profile) == ["777"] and xandr_ids(other) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"uid": "0"}, "not a Xandr"),  # getuid's "no id / opted out"
        ({"uid": "12ab"}, "not a Xandr"),
        ({"uid": "$UID"}, "not a Xandr"),  # the macro was not replaced
        ({"uid": "1" * 21}, "not a Xandr"),
        ({"uid": "18446744073709551616"}, "not a Xandr"),  # 20 digits but above 2^64 - 1: the profile API refuses it
        ({"uid": "00"}, "not a Xandr"),  # zero written differently
        ({"uid": "12\x0034"}, "not a Xandr"),
        ({"uid": "１２３"}, "not a Xandr"),  # full-width digits
        ({"uid": ""}, "required"),
        ({"p": "forged.token"}, "not valid"),
        ({"extra": "1"}, "Unknown parameter"),
    ],
)
def test_invalid_requests_are_refused_and_write_nothing(client, xandr_sync, profile, query, message):
    params = {"p": cookie_sync.sync_token(profile=profile), "uid": "123", **query}
    response = client.get(URL, params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ProfileIdentifier.objects.exists()


def test_repeated_parameters_are_refused(client, xandr_sync, profile):
    token = cookie_sync.sync_token(profile=profile)
    assert client.get(f"{URL}?p={token}&uid=1&uid=2").status_code == 400
    assert not ProfileIdentifier.objects.exists()


def test_expired_token_is_refused(client, xandr_sync, profile, settings):
    token = cookie_sync.sync_token(profile=profile)
    settings.DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS = -1
    response = sync(client, token)
    assert response.status_code == 400 and "expired" in response.content.decode()
    assert not ProfileIdentifier.objects.exists()


def test_a_token_signed_for_something_else_is_refused(client, xandr_sync, profile):
    other_salt = signing.dumps(profile.pk, salt="another.purpose")
    assert sync(client, other_salt).status_code == 400
    assert not ProfileIdentifier.objects.exists()


def test_partner_without_a_sync_is_404(client, profile):
    token = cookie_sync.sync_token(profile=profile)
    assert client.get("/sync/meta_pixel/", {"p": token, "uid": "1"}).status_code == 404
    assert client.get("/sync/xandr/", {"p": token, "uid": "1"}).status_code == 404  # the server-to-server connector
    assert client.get("/sync/nobody/", {"p": token, "uid": "1"}).status_code == 404
    assert not ProfileIdentifier.objects.exists()


def test_profile_without_ad_consent_gets_the_pixel_but_nothing_is_stored(client, xandr_sync):
    refused = Profile.objects.create(external_id="no-consent", consent_ads=False)
    response = sync(client, cookie_sync.sync_token(profile=refused))
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert not ProfileIdentifier.objects.exists()


def test_deleted_profile_is_404(client, xandr_sync, profile):
    token = cookie_sync.sync_token(profile=profile)
    profile.delete()
    assert sync(client, token).status_code == 404


def test_post_is_not_allowed(client, xandr_sync, profile):
    assert client.post(URL, {"p": cookie_sync.sync_token(profile=profile), "uid": "1"}).status_code == 405


def test_api_mints_tokens_that_the_endpoint_accepts(api, client, xandr_sync, profile):
    response = api.post("/api/v1/cookie-sync/tokens/", {"external_id": "visitor-1"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["expires_in"] > 0
    sync_url = body["sync_urls"]["xandr_cookie_sync"]
    assert sync_url.startswith(URL)
    assert client.get(sync_url + "555").status_code == 200
    assert xandr_ids(profile) == ["555"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "non_field_errors"),
        ({"external_id": "x", "profile_id": 1}, "non_field_errors"),
        ({"profile_id": 0}, "profile_id"),
    ],
)
def test_api_token_request_errors(api, payload, field):
    response = api.post("/api/v1/cookie-sync/tokens/", payload, format="json")
    assert response.status_code == 400 and field in response.json()


def test_api_token_needs_profile_change_rights_and_a_known_profile(api, viewer_api, profile):
    url = "/api/v1/cookie-sync/tokens/"
    assert APIClient().post(url, {"external_id": "visitor-1"}, format="json").status_code in (401, 403)
    assert viewer_api.post(url, {"external_id": "visitor-1"}, format="json").status_code == 403
    assert api.post(url, {"external_id": "nobody"}, format="json").status_code == 404
    assert api.post(url, {"profile_id": profile.pk}, format="json").status_code == 201
