"""DV360 Customer Match client: wire format, normalisation vectors, grouping/splitting, OAuth token handling, quota,
and the classification of google.rpc errors.

HTTP is mocked with `responses`; fixture payloads under fixtures/google_dv360/ follow Google's documented shapes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.google_dv360 import client as dv360_client
from connectors.partners.google_dv360 import normalize
from connectors.partners.google_dv360.client import ERROR_CODES, PROJECT_QUOTA, Client
from connectors.partners.google_dv360.descriptor import PARTNER, SCOPE
from tests.connectors.partners.local_server import local_server

FIXTURES = Path(__file__).parent / "fixtures" / "google_dv360"
ADVERTISER = "1234567"
AUDIENCE = "4567890123"
OTHER_AUDIENCE = "4567890999"
CLIENT_ID = "1234567890-dv360tests.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-unitTestClientSecretValue42"
REFRESH_TOKEN = "1//0gUnitTestRefreshTokenValueForDv360Client"
ACCESS_TOKEN = "ya29.a0AfB_byDv360AccessTokenForTestsOnly0123456789"
SECOND_TOKEN = "ya29.a0AfB_bySecondAccessTokenForTestsOnly987654321"
TOKEN_URL = "https://oauth2.googleapis.com/token"
API = "https://displayvideo.googleapis.com/v4"
EDIT_URL = f"{API}/firstPartyAndPartnerAudiences/{AUDIENCE}:editCustomerMatchMembers"
OTHER_EDIT_URL = f"{API}/firstPartyAndPartnerAudiences/{OTHER_AUDIENCE}:editCustomerMatchMembers"
ADVERTISER_URL = f"{API}/advertisers/{ADVERTISER}"
GRANTED = {"adUserData": "CONSENT_STATUS_GRANTED", "adPersonalization": "CONSENT_STATUS_GRANTED"}

# Known SHA-256 values, computed independently (`printf '%s' value | sha256sum`).
MARY_SHA = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"  # "mary@example.com"
JOHN_SHA = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"  # "john.doe@example.com"
NL_MOBILE_SHA = "fab7be8a931d1088a82f6acf9e468aaf6a3accc07d5112ee5d6fca93281e1583"  # "+31612345678"
US_PHONE_SHA = "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0"  # "+16505551234"
UK_PHONE_SHA = "f3d7e96c73fb0de1b66acfce541d7af758fbd4f3fa3af0ea4e10110000d3625e"  # "+442070313000"
NL_DIGITS_ONLY_SHA = "e03d152bbe638d9fe7a04f9b88a67674bf15b73c0981755c16eb78d177721e03"  # "31612345678" (Meta's form)
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
AAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_client(*, timeout: float = 5.0, base_url_override: str = "", **settings) -> Client:
    config = ClientConfig(
        partner_config_id=1,
        settings={"advertiser_id": ADVERTISER, "client_id": CLIENT_ID, **settings},
        secrets={"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
        timeout_seconds=timeout,
        base_url_override=base_url_override,
    )
    client = Client(config, http.new_session())
    client.oauth.forget()  # no token left over from another test
    return client


def item(index: int, slot: str, value: str, audience: str = AUDIENCE, action: str = Action.ADD) -> Item:
    return Item(profile_id=index, action=action, slot=slot, identifier=value, partner_audience_id=audience)


def email(index: int, value: str, audience: str = AUDIENCE, action: str = Action.ADD) -> Item:
    return item(index, "email", value, audience, action)


def sent(call) -> dict:
    return json.loads(call.request.body)


def api_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url != TOKEN_URL]


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


def by_index(calls) -> dict:
    """item index -> (ItemResult, CallResult); each index must appear exactly once."""
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


@pytest.fixture(autouse=True)
def fresh_quota():
    """Every test starts with full buckets (the local buckets outlive a test)."""
    client = make_client()
    ratelimit.reset(client.quota_key())
    ratelimit.reset(client.project_quota_key())
    yield
    ratelimit.reset(client.quota_key())
    ratelimit.reset(client.project_quota_key())


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def token(rsps):
    """The token endpoint answers with ACCESS_TOKEN."""
    rsps.add(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
    return rsps


# --- registry and descriptor ---------------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("google_dv360") is Client
    assert Client.partner is PARTNER
    assert Client.error_codes is ERROR_CODES


def test_descriptor_quota_is_the_write_quota_divided_by_five():
    """150 writes/min per advertiser, each editCustomerMatchMembers call counts as 5 writes."""
    assert PARTNER.limits.requests_per_minute == 150 // 5 == 30
    assert PARTNER.limits.max_batch_size == 500_000
    assert PROJECT_QUOTA.count == 700 // 5
    quota = make_client().quota
    assert (quota.count, quota.per_seconds) == (30, 60.0)


# --- normalisation vectors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("mary@example.com", "mary@example.com", MARY_SHA),
        ("  Mary@Example.COM ", "mary@example.com", MARY_SHA),
        ("ma ry@exam\tple.com\n", "mary@example.com", MARY_SHA),  # all whitespace goes, not only at the ends
        ("John.Doe@Example.com", "john.doe@example.com", JOHN_SHA),  # dots kept: no gmail rule for Customer Match
    ],
)
def test_email_vectors(raw, normalised, digest):
    assert normalize.normalize_email(raw) == normalised
    assert hashlib.sha256(normalised.encode()).hexdigest() == digest
    assert normalize.hash_email(raw) == digest


def test_gmail_dots_are_kept():
    assert normalize.normalize_email("Jane.Doe@Gmail.com") == "jane.doe@gmail.com"
    assert normalize.hash_email("jane.doe@gmail.com") != normalize.hash_email("janedoe@gmail.com")


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("+31612345678", "+31612345678", NL_MOBILE_SHA),  # E.164 as stored: the "+" is hashed too
        ("+31 6 1234 5678", "+31612345678", NL_MOBILE_SHA),
        ("+31 (0)6-1234 5678", "+31612345678", NL_MOBILE_SHA),  # national trunk after the country code dropped
        ("0031 6 12345678", "+31612345678", NL_MOBILE_SHA),  # international "00" prefix
        ("+1 (650) 555-1234", "+16505551234", US_PHONE_SHA),
        ("1.650.555.1234", "+16505551234", US_PHONE_SHA),  # no prefix: taken as starting with the country code
        ("+44 20 7031 3000", "+442070313000", UK_PHONE_SHA),
    ],
)
def test_phone_vectors(raw, normalised, digest):
    assert normalize.normalize_phone(raw) == normalised
    assert hashlib.sha256(normalised.encode()).hexdigest() == digest
    assert normalize.hash_phone(raw) == digest


def test_phone_hash_differs_from_metas_digits_only_form():
    assert normalize.hash_phone("+31612345678") != NL_DIGITS_ONLY_SHA


@pytest.mark.parametrize(
    ("slot", "raw"),
    [
        ("email", "   "),
        ("email", "not-an-email"),
        ("email", "@example.com"),
        ("email", "mary@"),
        ("phone", "+"),
        ("phone", "0612345678"),  # national form: country code unknown
        ("phone", "(0)6 1234 5678"),
        ("phone", "+0612345678"),  # no country code starts with 0
        ("phone", "+123456"),  # 6 digits: too short for E.164
        ("phone", "+1234567890123456"),  # 16 digits: too long
        ("phone", "+31 6 1234 5678 ext 12"),
        ("phone", "+٣١٦١٢٣٤٥٦٧٨"),  # non-ASCII digits
        ("mobile_ad_id", " "),
        ("mobile_ad_id", "not-a-device-id"),
        ("customer_id", "c-1"),  # not a DV360 slot
    ],
)
def test_values_that_are_not_sent(slot, raw):
    assert normalize.prepare(slot, raw) == ""


def test_mobile_device_ids_are_trimmed_not_hashed_case_kept():
    assert normalize.prepare("mobile_ad_id", f" {IDFA} ") == IDFA
    assert normalize.prepare("mobile_ad_id", AAID) == AAID


def test_prehashed_values_are_not_hashed_twice():
    assert normalize.hash_email(MARY_SHA.upper()) == MARY_SHA
    assert normalize.hash_phone(f" {US_PHONE_SHA} ") == US_PHONE_SHA


# --- wire format --------------------------------------------------------------------------------------------------
def test_add_posts_contact_infos_with_consent(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    calls = make_client().send(
        Action.ADD,
        [email(1, " Mary@Example.com"), item(2, "phone", "+1 (650) 555-1234"), email(3, "john.doe@example.com")],
    )
    assert len(calls) == 1
    call = calls[0]
    assert call.item_indices == [0, 1, 2]
    assert [r.outcome for r in call.results] == [Outcome.ADDED] * 3
    assert call.status_code == 200 and call.snippet == f"audience {AUDIENCE}: 3 members added"
    request = api_calls(token)[0].request
    assert request.method == "POST"
    assert request.url == EDIT_URL
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert sent(api_calls(token)[0]) == {
        "advertiserId": ADVERTISER,
        "addedContactInfoList": {
            "contactInfos": [
                {"hashedEmails": [MARY_SHA]},
                {"hashedPhoneNumbers": [US_PHONE_SHA]},
                {"hashedEmails": [JOHN_SHA]},
            ],
            "consent": GRANTED,
        },
    }


def test_token_request_is_a_refresh_token_grant(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    make_client().send(Action.ADD, [email(1, "mary@example.com")])
    form = parse_qs(token_calls(token)[0].request.body)
    assert form == {
        "grant_type": ["refresh_token"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH_TOKEN],
    }
    assert SCOPE == "https://www.googleapis.com/auth/display-video"


def test_remove_sends_removed_list_without_consent(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    calls = make_client().send(Action.REMOVE, [email(1, "mary@example.com", action=Action.REMOVE)])
    assert calls[0].results[0].outcome == Outcome.REMOVED
    assert calls[0].snippet.endswith("1 members removed")
    assert sent(api_calls(token)[0]) == {
        "advertiserId": ADVERTISER,
        "removedContactInfoList": {"contactInfos": [{"hashedEmails": [MARY_SHA]}]},
    }


def test_update_is_an_add(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    calls = make_client().send(Action.UPDATE, [email(1, "mary@example.com", action=Action.UPDATE)])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert "addedContactInfoList" in sent(api_calls(token)[0])


def test_mobile_ids_go_in_their_own_list_and_request(token):
    device_audience = "8800000001"
    device_url = f"{API}/firstPartyAndPartnerAudiences/{device_audience}:editCustomerMatchMembers"
    token.add(responses.POST, device_url, json={"firstPartyAndPartnerAudienceId": device_audience})
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    items = [
        item(1, "mobile_ad_id", IDFA, device_audience),
        email(2, "mary@example.com"),
        item(3, "mobile_ad_id", f" {AAID}", device_audience),
    ]
    calls = make_client().send(Action.ADD, items)
    assert [c.item_indices for c in calls] == [[0, 2], [1]]
    bodies = {c.request.url: sent(c) for c in api_calls(token)}
    assert bodies[device_url] == {
        "advertiserId": ADVERTISER,
        "addedMobileDeviceIdList": {"mobileDeviceIds": [IDFA, AAID], "consent": GRANTED},
    }
    removed = make_client().send(Action.REMOVE, [item(1, "mobile_ad_id", IDFA, device_audience, Action.REMOVE)])
    assert removed[0].results[0].outcome == Outcome.REMOVED
    assert sent(api_calls(token)[-1])["removedMobileDeviceIdList"] == {"mobileDeviceIds": [IDFA]}


def test_groups_by_audience(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    token.add(responses.POST, OTHER_EDIT_URL, json={"firstPartyAndPartnerAudienceId": OTHER_AUDIENCE})
    items = [email(1, "a@example.com"), email(2, "b@example.com", OTHER_AUDIENCE), email(3, "c@example.com")]
    calls = make_client().send(Action.ADD, items)
    assert sorted(c.item_indices for c in calls) == [[0, 2], [1]]
    assert {c.request.url for c in api_calls(token)} == {EDIT_URL, OTHER_EDIT_URL}


@pytest.mark.parametrize(
    ("user_data", "personalization", "consent"),
    [
        ("CONSENT_STATUS_GRANTED", "CONSENT_STATUS_GRANTED", GRANTED),
        ("CONSENT_STATUS_GRANTED", "CONSENT_STATUS_UNSPECIFIED", {"adUserData": "CONSENT_STATUS_GRANTED"}),
        ("CONSENT_STATUS_UNSPECIFIED", "CONSENT_STATUS_GRANTED", {"adPersonalization": "CONSENT_STATUS_GRANTED"}),
        ("CONSENT_STATUS_UNSPECIFIED", "CONSENT_STATUS_UNSPECIFIED", None),
    ],
)
def test_consent_comes_from_the_settings(token, user_data, personalization, consent):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    client = make_client(ad_user_data_consent=user_data, ad_personalization_consent=personalization)
    client.send(Action.ADD, [email(1, "mary@example.com")])
    assert sent(api_calls(token)[0])["addedContactInfoList"].get("consent") == consent


def test_settings_without_consent_default_to_granted(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    make_client().send(Action.ADD, [email(1, "mary@example.com")])  # older configurations: no consent keys
    assert sent(api_calls(token)[0])["addedContactInfoList"]["consent"] == GRANTED


def test_base_url_override_maps_both_hosts(rsps):
    base = "http://127.0.0.1:8765/c/dv"
    rsps.add(responses.POST, f"{base}/oauth2.googleapis.com/token", json=fixture("token_ok.json"))
    edit = f"{base}/displayvideo.googleapis.com/v4/firstPartyAndPartnerAudiences/{AUDIENCE}:editCustomerMatchMembers"
    rsps.add(responses.POST, edit, json=fixture("edit_ok.json"))
    calls = make_client(base_url_override=base).send(Action.ADD, [email(1, "mary@example.com")])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert [c.request.url for c in rsps.calls] == [f"{base}/oauth2.googleapis.com/token", edit]


# --- items that are not sent, batching ----------------------------------------------------------------------------
def test_items_that_cannot_be_sent_get_their_own_results(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    items = [
        email(1, "mary@example.com"),
        email(2, "mary@example.com", audience=""),
        email(3, "mary@example.com", audience="seg-1"),
        item(4, "customer_id", "c-4"),
        email(5, "no email here"),
        item(6, "phone", "0612345678"),
        email(7, "john.doe@example.com"),
    ]
    results = by_index(make_client().send(Action.ADD, items))
    assert sorted(results) == list(range(7))
    codes = {i: (r.outcome, r.partner_code, r.retryable) for i, (r, _) in results.items()}
    assert codes == {
        0: (Outcome.ADDED, "", False),
        1: (Outcome.OTHER_ERROR, "no_partner_audience_id", False),
        2: (Outcome.OTHER_ERROR, "invalid_audience_id", False),
        3: (Outcome.OTHER_ERROR, "unsupported_slot", False),
        4: (Outcome.OTHER_ERROR, "invalid_identifier", False),
        5: (Outcome.OTHER_ERROR, "invalid_identifier", False),
        6: (Outcome.ADDED, "", False),
    }
    assert results[4][1].status_code is None
    assert len(api_calls(token)) == 1
    assert len(sent(api_calls(token)[0])["addedContactInfoList"]["contactInfos"]) == 2


def test_nothing_valid_means_no_call_and_no_token(rsps):
    calls = make_client().send(Action.ADD, [email(1, "   "), item(2, "customer_id", "x")])
    assert sorted(i for c in calls for i in c.item_indices) == [0, 1]
    assert len(rsps.calls) == 0


def test_missing_advertiser_id_is_not_sent(rsps):
    calls = make_client(advertiser_id="").send(Action.ADD, [email(1, "mary@example.com")])
    assert calls[0].results[0].partner_code == "no_advertiser_id"
    assert len(rsps.calls) == 0


def test_splits_at_the_list_limit(token, monkeypatch):
    monkeypatch.setattr(dv360_client, "MAX_MEMBERS_PER_LIST", 3)
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    items = [email(i, f"user{i}@example.com") for i in range(7)]
    calls = make_client().send(Action.ADD, items)
    assert [c.item_indices for c in calls] == [[0, 1, 2], [3, 4, 5], [6]]
    sizes = [len(sent(c)["addedContactInfoList"]["contactInfos"]) for c in api_calls(token)]
    assert sizes == [3, 3, 1]
    assert len(token_calls(token)) == 1  # the token is fetched once and reused


def test_documented_list_limit():
    assert dv360_client.MAX_MEMBERS_PER_LIST == 500_000


# --- OAuth tokens ---------------------------------------------------------------------------------------------------
def test_token_is_cached_across_sends(token):
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    client = make_client()
    client.send(Action.ADD, [email(1, "mary@example.com")])
    client.send(Action.ADD, [email(2, "john.doe@example.com")])
    assert len(token_calls(token)) == 1
    assert len(api_calls(token)) == 2


def test_refused_cached_token_is_replaced_and_the_call_made_again(rsps):
    client = make_client()
    tokens.put(client.oauth.key, "ya29.cached-but-revoked-token-00000000000", 3000)
    rsps.add(responses.POST, TOKEN_URL, json={**fixture("token_ok.json"), "access_token": SECOND_TOKEN})
    rsps.add(responses.POST, EDIT_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    rsps.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    calls = client.send(Action.ADD, [email(1, "mary@example.com")])
    assert len(calls) == 1  # one result per item: the refused attempt is not reported
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert calls[0].credentials_invalid is False
    auth = [c.request.headers["Authorization"] for c in api_calls(rsps)]
    assert auth == ["Bearer ya29.cached-but-revoked-token-00000000000", f"Bearer {SECOND_TOKEN}"]
    assert tokens.get(client.oauth.key) == SECOND_TOKEN


def test_fresh_token_refused_means_invalid_credentials_at_once(token):
    token.add(responses.POST, EDIT_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    client = make_client()
    call = client.send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")])[0]
    assert call.credentials_invalid is True
    assert call.status_code == 401
    assert call.partner_code == "UNAUTHENTICATED/ACCESS_TOKEN_EXPIRED"
    assert all(r.outcome == Outcome.INVALID_CREDENTIALS and not r.retryable for r in call.results)
    assert len(api_calls(token)) == 1  # the token was already fresh: no second try
    assert tokens.get(client.oauth.key) is None  # forgotten


def test_cached_then_fresh_token_refused(rsps):
    client = make_client()
    tokens.put(client.oauth.key, "ya29.cached-token-0000000000000000000000", 3000)
    rsps.add(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
    rsps.add(responses.POST, EDIT_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    call = client.send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.credentials_invalid is True
    assert len(api_calls(rsps)) == 2 and len(token_calls(rsps)) == 1


def test_refresh_token_refused_by_the_token_endpoint(rsps):
    rsps.add(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.credentials_invalid is True
    assert call.partner_code == "oauth/invalid_grant" and call.status_code == 400
    result = call.results[0]
    assert (result.outcome, result.retryable) == (Outcome.INVALID_CREDENTIALS, False)
    assert "expired or revoked" in result.message
    assert api_calls(rsps) == []


@pytest.mark.parametrize(("error", "status"), [("invalid_client", 401), ("unauthorized_client", 400)])
def test_other_credential_errors_of_the_token_endpoint(rsps, error, status):
    rsps.add(responses.POST, TOKEN_URL, json={"error": error, "error_description": "Unauthorized"}, status=status)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.credentials_invalid is True and call.partner_code == f"oauth/{error}"


def test_token_endpoint_unavailable_is_retried_not_credentials(rsps):
    rsps.add(responses.POST, TOKEN_URL, json={"error": "temporarily_unavailable"}, status=503)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.credentials_invalid is False
    result = call.results[0]
    assert (result.outcome, result.retryable) == (Outcome.OTHER_ERROR, True)
    assert result.partner_code == "oauth/temporarily_unavailable"


def test_token_endpoint_timeout_is_a_timeout(rsps):
    rsps.add(responses.POST, TOKEN_URL, body=requests.exceptions.ReadTimeout("Read timed out."))
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert (call.results[0].outcome, call.results[0].retryable, call.credentials_invalid) == (
        Outcome.TIMEOUT,
        True,
        False,
    )


def test_token_endpoint_unreachable_is_retried(rsps):
    rsps.add(responses.POST, TOKEN_URL, body=requests.exceptions.ConnectionError("Connection refused"))
    result = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "oauth/unavailable", True)


# --- google.rpc errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("error_400_invalid_argument.json", 400, "INVALID_ARGUMENT"),
        ("error_400_failed_precondition.json", 400, "FAILED_PRECONDITION"),
        ("error_403_permission_denied.json", 403, "PERMISSION_DENIED"),
        ("error_403_scope.json", 403, "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
        ("error_404_not_found.json", 404, "NOT_FOUND"),
    ],
)
def test_final_partner_errors(token, name, status, code):
    token.add(responses.POST, EDIT_URL, json=fixture(name), status=status)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")])[0]
    assert (call.status_code, call.partner_code, call.credentials_invalid, call.retry_after) == (
        status,
        code,
        False,
        None,
    )
    assert all(r.outcome == Outcome.PARTNER_ERROR and not r.retryable and r.partner_code == code for r in call.results)
    assert call.results[0].message.startswith(code.split("/")[0] + ": ")
    assert Client.error_meaning(code)
    assert len(api_calls(token)) == 1  # not retried by the client either


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("error_429_resource_exhausted.json", 429, "RESOURCE_EXHAUSTED"),
        ("error_500_internal.json", 500, "INTERNAL"),
        ("error_503_unavailable.json", 503, "UNAVAILABLE"),
        ("error_504_deadline.json", 504, "DEADLINE_EXCEEDED"),
    ],
)
def test_retryable_errors_keep_retry_after(token, name, status, code):
    token.add(responses.POST, EDIT_URL, json=fixture(name), status=status, headers={"Retry-After": "30"})
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert (call.status_code, call.partner_code, call.retry_after) == (status, code, 30.0)
    result = call.results[0]
    assert (result.outcome, result.retryable, result.partner_code) == (Outcome.PARTNER_ERROR, True, code)


def test_429_without_retry_after(token):
    token.add(responses.POST, EDIT_URL, json=fixture("error_429_resource_exhausted.json"), status=429)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.retry_after is None and call.results[0].retryable


def test_non_json_server_error(token):
    token.add(responses.POST, EDIT_URL, body="<html>502 Bad Gateway</html>", status=502, content_type="text/html")
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert (call.partner_code, call.results[0].retryable) == ("http_502", True)
    assert Client.error_meaning("http_502").endswith("retried.")


def test_unreadable_success_is_retried(token):
    token.add(responses.POST, EDIT_URL, body="not json", status=200)
    result = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0].results[0]
    assert (result.partner_code, result.retryable) == ("invalid_response", True)


def test_one_failing_audience_leaves_the_other_added(token):
    """DV360 has no per-row errors: an edit succeeds or fails whole, so a partial failure is per request."""
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    token.add(responses.POST, OTHER_EDIT_URL, json=fixture("error_404_not_found.json"), status=404)
    items = [email(1, "a@example.com"), email(2, "b@example.com", OTHER_AUDIENCE), email(3, "not valid")]
    results = by_index(make_client().send(Action.ADD, items))
    assert {i: (r.outcome, r.partner_code) for i, (r, _) in results.items()} == {
        0: (Outcome.ADDED, ""),
        1: (Outcome.PARTNER_ERROR, "NOT_FOUND"),
        2: (Outcome.OTHER_ERROR, "invalid_identifier"),
    }


def test_timeout(token):
    token.add(responses.POST, EDIT_URL, body=requests.exceptions.ReadTimeout("Read timed out. (read timeout=3)"))
    call = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")])[0]
    assert call.item_indices == [0, 1] and call.status_code is None
    assert all(r.outcome == Outcome.TIMEOUT and r.retryable for r in call.results)


def test_connection_error(token):
    token.add(responses.POST, EDIT_URL, body=requests.exceptions.ConnectionError("Connection refused"))
    result = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


def test_stalling_api_is_cut_off_near_the_timeout():
    """Real socket: the server sleeps 2 s, the client gives up at its 0.5 s deadline."""
    with local_server(delay=2.0, body=json.dumps(fixture("edit_ok.json")).encode()) as (base, recorded):
        client = make_client(timeout=0.5, base_url_override=base)
        tokens.put(client.oauth.key, ACCESS_TOKEN, 3000)
        calls = client.send(Action.ADD, [email(1, "mary@example.com")])
    assert calls[0].results[0].outcome == Outcome.TIMEOUT and calls[0].results[0].retryable
    assert recorded.requests[0]["path"] == (
        f"/displayvideo.googleapis.com/v4/firstPartyAndPartnerAudiences/{AUDIENCE}:editCustomerMatchMembers"
    )


def test_no_secret_or_identifier_leaks_into_results(token):
    body = fixture("error_400_invalid_argument.json")
    body["error"]["message"] = f"Bad value {MARY_SHA} for mary@example.com with token {ACCESS_TOKEN}"
    token.add(responses.POST, EDIT_URL, json=body, status=400)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    text = " ".join([call.snippet, call.partner_code, *(r.message for r in call.results)])
    for secret in (MARY_SHA, "mary@example.com", ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in text


# --- quota ------------------------------------------------------------------------------------------------------------
def test_quota_is_per_advertiser_and_defers_items_when_spent(token, settings):
    settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS = 0
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    client = make_client()
    assert client.quota_key() == f"google_dv360:advertiser:{ADVERTISER}"
    # Another configuration of the same advertiser shares the bucket.
    other = make_client()
    assert other.quota_key() == client.quota_key()
    outcomes = [client.send(Action.ADD, [email(i, f"u{i}@example.com")])[0] for i in range(client.quota.capacity)]
    assert all(c.results[0].outcome == Outcome.ADDED for c in outcomes)
    deferred = other.send(Action.ADD, [email(9, "late@example.com")])[0]
    result = deferred.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "rate_limited", True)
    assert deferred.retry_after and deferred.retry_after > 0
    assert len(api_calls(token)) == client.quota.capacity  # nothing sent for the deferred item


def test_project_quota_applies_across_advertisers(token, settings):
    settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS = 0
    token.add(responses.POST, EDIT_URL, json=fixture("edit_ok.json"))
    client = make_client()
    key = client.project_quota_key()
    assert key == f"google_dv360:project:{CLIENT_ID}"
    while ratelimit.take(key, PROJECT_QUOTA) == 0.0:  # spend the project's bucket
        pass
    result = client.send(Action.ADD, [email(1, "mary@example.com")])[0].results[0]
    assert result.partner_code == "rate_limited"
    assert api_calls(token) == []


# --- test connection -----------------------------------------------------------------------------------------------
def test_connection_ok(token):
    token.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    ok, message = make_client().test_connection()
    assert ok is True
    assert message == f"Connected to advertiser Brand EU ({ADVERTISER})."
    request = api_calls(token)[0].request
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert ACCESS_TOKEN not in request.url


def test_connection_mentions_an_inactive_advertiser(token):
    token.add(
        responses.GET, ADVERTISER_URL, json={**fixture("advertiser.json"), "entityStatus": "ENTITY_STATUS_PAUSED"}
    )
    ok, message = make_client().test_connection()
    assert ok and "ENTITY_STATUS_PAUSED" in message


def test_connection_bad_refresh_token(rsps):
    rsps.add(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
    ok, message = make_client().test_connection()
    assert ok is False
    assert message.startswith("Invalid credentials (oauth/invalid_grant)")
    assert REFRESH_TOKEN not in message and CLIENT_SECRET not in message


def test_connection_fresh_token_refused(token):
    token.add(responses.GET, ADVERTISER_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    ok, message = make_client().test_connection()
    assert ok is False and message.startswith("Invalid credentials")


def test_connection_retries_a_refused_cached_token(rsps):
    client = make_client()
    tokens.put(client.oauth.key, "ya29.cached-token-0000000000000000000000", 3000)
    rsps.add(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    ok, _ = client.test_connection()
    assert ok is True


def test_connection_unknown_advertiser(token):
    token.add(responses.GET, ADVERTISER_URL, json=fixture("error_404_not_found.json"), status=404)
    ok, message = make_client().test_connection()
    assert ok is False
    assert message.startswith(f"Advertiser {ADVERTISER} was not found")


def test_connection_no_access_to_the_advertiser(token):
    token.add(responses.GET, ADVERTISER_URL, json=fixture("error_403_scope.json"), status=403)
    ok, message = make_client().test_connection()
    assert ok is False
    assert "Permission denied" in message and "display-video scope" in message


def test_connection_timeout(token):
    token.add(responses.GET, ADVERTISER_URL, body=requests.exceptions.ReadTimeout("Read timed out."))
    ok, message = make_client(timeout=2).test_connection()
    assert (ok, message) == (False, "Display & Video 360 did not answer within 2 s.")


def test_connection_unreachable_token_endpoint(rsps):
    rsps.add(responses.POST, TOKEN_URL, body=requests.exceptions.ConnectionError("Connection refused"))
    ok, message = make_client().test_connection()
    assert ok is False and message.startswith("Could not get an access token")


def test_connection_without_advertiser_id(rsps):
    assert make_client(advertiser_id="").test_connection() == (False, "Set the advertiser ID (digits) first.")
    assert len(rsps.calls) == 0


# --- plain words ---------------------------------------------------------------------------------------------------
def test_error_codes_in_plain_words():
    for code in (
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "oauth/invalid_grant",
        "invalid_audience_id",
        "invalid_identifier",
        "rate_limited",
    ):
        assert Client.error_meaning(code), code
    assert "scope" in Client.error_meaning("PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    assert Client.error_meaning("PERMISSION_DENIED/SOMETHING_NEW") == ERROR_CODES["PERMISSION_DENIED"]
