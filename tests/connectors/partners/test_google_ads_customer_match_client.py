"""Google Ads Customer Match (Data Manager API) client: wire format, normalisation vectors, batching, OAuth token
handling, google.rpc error classification and test_connection.

HTTP is mocked with `responses`; fixture payloads under fixtures/google_ads_customer_match/ follow the shapes in the
Data Manager API reference (google.rpc.Status with ErrorInfo / BadRequest / RetryInfo details).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests
import responses

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.google_ads_customer_match import normalize
from connectors.partners.google_ads_customer_match.client import ERROR_CODES, MAX_MEMBERS, Client

FIXTURES = Path(__file__).parent / "fixtures" / "google_ads_customer_match"
CLIENT_ID = "123456789012-customermatch.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-customerMatchClientSecret42"
REFRESH_TOKEN = "1//0gCustomerMatchRefreshTokenValue77"
ACCESS_TOKEN = "ya29.a0AfB_byTestAccessTokenValue0123456789"
TOKEN_URL = "https://oauth2.googleapis.com/token"
INGEST_URL = "https://datamanager.googleapis.com/v1/audienceMembers:ingest"
REMOVE_URL = "https://datamanager.googleapis.com/v1/audienceMembers:remove"
LISTS_URL = "https://datamanager.googleapis.com/v1/accountTypes/GOOGLE_ADS/accounts/1234567890/userLists"
LIST_ID = "5551234567"
OTHER_LIST = "5559876543"

# SHA-256 of the normalised text, computed independently (sha256sum / openssl dgst -sha256 -binary | base64).
JANE_GMAIL_SHA = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"  # "janedoe@gmail.com"
JANE_GMAIL_B64 = "1hFzBkhe0OUK+rOshx6Y+BaZFR8wKBUn1j/18jNlbGk="
USER_NAME_SHA = "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac"  # "user.name+nyc@example.com"
GOOGLEMAIL_SHA = "332ed5427d17deb381928a719533e85046d68d7e45553abb805852b7d631fcb7"  # cloudysanfrancisco@googlemail.com
MARY_SHA = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"  # "mary@example.com"
DANA_SHA = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"  # "dana@example.com"
US_PHONE_SHA = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"  # "+18005550100"
US_PHONE_B64 = "+09zpuxf23B31WTN0iw1VLQ85JFoVQw7EsVHt4xRezA="
NL_PHONE_SHA = "fab7be8a931d1088a82f6acf9e468aaf6a3accc07d5112ee5d6fca93281e1583"  # "+31612345678"
PROBE_SHA = "e52a233b76e59f5f58003fb0ba1c1f6c798c8ee61c7eeb217ca9e04370291eb8"  # "dap-connection-test@example.com"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


SETTINGS = {
    "operating_account_id": "123-456-7890",
    "user_list_id": LIST_ID,
    "client_id": CLIENT_ID,
    "encoding": "HEX",
    "ad_user_data_consent": "CONSENT_GRANTED",
    "ad_personalization_consent": "CONSENT_GRANTED",
    "terms_of_service_accepted": True,
}


def make_client(*, timeout: float = 5.0, base_url_override: str = "", secrets=None, **settings) -> Client:
    config = ClientConfig(
        partner_config_id=7,
        settings={**SETTINGS, **settings},
        secrets=secrets if secrets is not None else {"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
        timeout_seconds=timeout,
        base_url_override=base_url_override,
    )
    return Client(config, http.new_session())


def email(profile_id: int, value: str, audience: str = LIST_ID, action: str = Action.ADD) -> Item:
    return Item(profile_id=profile_id, action=action, slot="email", identifier=value, partner_audience_id=audience)


def phone(profile_id: int, value: str, audience: str = LIST_ID, action: str = Action.ADD) -> Item:
    return Item(profile_id=profile_id, action=action, slot="phone", identifier=value, partner_audience_id=audience)


def sent(call) -> dict:
    return json.loads(call.request.body)


def api_calls(rsps) -> list:
    return [c for c in rsps.calls if "datamanager.googleapis.com" in c.request.url]


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


def identifiers(body: dict) -> list[dict]:
    return [m["userData"]["userIdentifiers"][0] for m in body["audienceMembers"]]


def by_index(calls) -> dict:
    """item index -> (ItemResult, CallResult); every item exactly once."""
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


@pytest.fixture(autouse=True)
def fresh_tokens_and_quota():
    tokens._local.clear()
    ratelimit.reset(f"google_datamanager:{CLIENT_ID}")
    yield
    tokens._local.clear()
    ratelimit.reset(f"google_datamanager:{CLIENT_ID}")


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
        yield mock


def test_dispatcher_finds_the_client():
    assert client_class("google_ads_customer_match") is Client


# --- normalisation vectors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("  Jane.Doe+News@GMail.com ", "janedoe@gmail.com", JANE_GMAIL_SHA),  # gmail: dots and +tag removed
        ("jane . doe@gmail.com", "janedoe@gmail.com", JANE_GMAIL_SHA),  # inner whitespace removed too
        ("cloudy.sanfrancisco+shopping@googlemail.com", "cloudysanfrancisco@googlemail.com", GOOGLEMAIL_SHA),
        ("User.Name+NYC@Example.com", "user.name+nyc@example.com", USER_NAME_SHA),  # other domains keep . and +
        ("\tMARY@example.COM\n", "mary@example.com", MARY_SHA),
        ("dana@example.com", "dana@example.com", DANA_SHA),
    ],
)
def test_email_vectors(raw, normalised, digest):
    assert normalize.normalize_email(raw) == normalised
    assert normalize.hash_email(raw) == digest
    assert normalize.prepare("email", raw) == ("emailAddress", digest)


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("+1 (800) 555-0100", "+18005550100", US_PHONE_SHA),
        ("+1.800.555.0100", "+18005550100", US_PHONE_SHA),
        ("001 800 555 0100", "+18005550100", US_PHONE_SHA),  # 00 international prefix
        ("+31 (0)6 1234 5678", "+31612345678", NL_PHONE_SHA),  # national trunk after the country code dropped
        (" +31612345678 ", "+31612345678", NL_PHONE_SHA),
    ],
)
def test_phone_vectors(raw, normalised, digest):
    assert normalize.normalize_phone(raw) == normalised
    assert normalize.hash_phone(raw) == digest
    assert normalize.prepare("phone", raw) == ("phoneNumber", digest)


def test_base64_encoding_of_the_same_digests():
    assert normalize.hash_email("Jane.Doe@gmail.com", "BASE64") == JANE_GMAIL_B64
    assert normalize.hash_phone("+1 800 555 0100", "BASE64") == US_PHONE_B64
    assert base64.b64decode(JANE_GMAIL_B64).hex() == JANE_GMAIL_SHA


@pytest.mark.parametrize(
    ("slot", "raw"),
    [
        ("email", "not-an-email"),
        ("email", "   "),
        ("email", "a@b@example.com"),
        ("email", "someone@localhost"),
        ("email", "+promo@gmail.com"),  # nothing left of the gmail local part
        ("phone", "0612345678"),  # no country code: cannot be E.164
        ("phone", "+0612345678"),
        ("phone", "+1 800 CALL NOW"),
        ("phone", "+1234"),
        ("phone", "+1234567890123456"),  # 16 digits
        ("phone", "+٣١٦١٢٣٤٥٦٧٨"),  # non-ASCII digits
        ("mobile_ad_id", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),  # not a Customer Match contact identifier
    ],
)
def test_values_that_cannot_be_sent(slot, raw):
    assert normalize.prepare(slot, raw) == ("", "")


def test_prehashed_values_are_not_hashed_twice():
    assert normalize.hash_email(MARY_SHA.upper()) == MARY_SHA
    assert normalize.hash_phone(US_PHONE_SHA, "BASE64") == US_PHONE_B64


# --- request format ---------------------------------------------------------------------------------------------


def test_add_ingests_hashed_members_with_destination_consent_and_terms(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    client = make_client(login_account_id="987-654-3210")
    items = [email(1, " Jane.Doe+News@GMail.com"), phone(2, "+1 (800) 555-0100")]
    calls = client.send(Action.ADD, items)

    assert [c.status_code for c in calls] == [200]
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED, Outcome.ADDED]
    assert calls[0].item_indices == [0, 1]
    assert "0d1b8a6e-7c49-4f7e-9a3c-5b2e8f1d4c60" in calls[0].snippet
    (request,) = api_calls(rsps)
    assert request.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.request.headers["Content-Type"] == "application/json"
    assert sent(request) == {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                "productDestinationId": LIST_ID,
                "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "9876543210"},
            }
        ],
        "audienceMembers": [
            {"userData": {"userIdentifiers": [{"emailAddress": JANE_GMAIL_SHA}]}},
            {"userData": {"userIdentifiers": [{"phoneNumber": US_PHONE_SHA}]}},
        ],
        "encoding": "HEX",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }


def test_remove_posts_to_remove_without_consent_or_terms(rsps):
    rsps.add(responses.POST, REMOVE_URL, json=fixture("remove_ok.json"))
    calls = make_client().send(Action.REMOVE, [email(1, "mary@example.com", action=Action.REMOVE)])
    assert calls[0].results[0].outcome == Outcome.REMOVED
    (request,) = api_calls(rsps)
    assert request.request.url == REMOVE_URL
    body = sent(request)
    assert set(body) == {"destinations", "audienceMembers", "encoding"}
    assert "loginAccount" not in body["destinations"][0]
    assert identifiers(body) == [{"emailAddress": MARY_SHA}]


def test_update_is_an_ingest(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    calls = make_client().send(Action.UPDATE, [email(1, "mary@example.com", action=Action.UPDATE)])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert api_calls(rsps)[0].request.url == INGEST_URL


def test_base64_encoding_setting(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    make_client(encoding="BASE64").send(Action.ADD, [email(1, "jane.doe@gmail.com"), phone(2, "+18005550100")])
    body = sent(api_calls(rsps)[0])
    assert body["encoding"] == "BASE64"
    assert identifiers(body) == [{"emailAddress": JANE_GMAIL_B64}, {"phoneNumber": US_PHONE_B64}]


def test_unspecified_consent_is_left_out_and_denied_is_sent(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    make_client(ad_user_data_consent="CONSENT_DENIED", ad_personalization_consent="CONSENT_STATUS_UNSPECIFIED").send(
        Action.ADD, [email(1, "mary@example.com")]
    )
    assert sent(api_calls(rsps)[0])["consent"] == {"adUserData": "CONSENT_DENIED"}
    rsps.calls.reset()
    both = {
        "ad_user_data_consent": "CONSENT_STATUS_UNSPECIFIED",
        "ad_personalization_consent": "CONSENT_STATUS_UNSPECIFIED",
    }
    make_client(**both).send(Action.ADD, [email(1, "mary@example.com")])
    assert "consent" not in sent(api_calls(rsps)[0])


def test_default_list_and_list_problems(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [email(1, "mary@example.com", audience=""), email(2, "dana@example.com", audience="list-7")]
    calls = make_client().send(Action.ADD, items)
    results = by_index(calls)
    assert results[0][0].outcome == Outcome.ADDED
    assert (results[1][0].outcome, results[1][0].partner_code) == (Outcome.OTHER_ERROR, "invalid_list_id")
    assert sent(api_calls(rsps)[0])["destinations"][0]["productDestinationId"] == LIST_ID

    rsps.calls.reset()
    calls = make_client(user_list_id="").send(Action.ADD, [email(1, "mary@example.com", audience="")])
    assert calls[0].results[0].partner_code == "no_partner_audience_id" and not calls[0].results[0].retryable
    assert calls[0].status_code is None and not api_calls(rsps)


def test_one_request_per_list(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [email(1, "mary@example.com"), email(2, "dana@example.com", audience=OTHER_LIST), phone(3, "+18005550100")]
    calls = make_client().send(Action.ADD, items)
    assert sorted(c.item_indices for c in calls) == [[0, 2], [1]]
    lists = {sent(c)["destinations"][0]["productDestinationId"]: identifiers(sent(c)) for c in api_calls(rsps)}
    assert lists == {
        LIST_ID: [{"emailAddress": MARY_SHA}, {"phoneNumber": US_PHONE_SHA}],
        OTHER_LIST: [{"emailAddress": DANA_SHA}],
    }


def test_splits_at_10000_members(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [email(i, f"user{i}@example.com") for i in range(MAX_MEMBERS + 1)]
    calls = make_client().send(Action.ADD, items)
    assert [len(c.item_indices) for c in calls] == [MAX_MEMBERS, 1]
    assert [len(sent(c)["audienceMembers"]) for c in api_calls(rsps)] == [MAX_MEMBERS, 1]
    assert len(by_index(calls)) == MAX_MEMBERS + 1
    assert len(token_calls(rsps)) == 1  # one token for both requests


def test_unusable_identifiers_are_not_sent(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [
        email(1, "not-an-email"),
        phone(2, "0612345678"),
        Item(3, Action.ADD, "customer_id", "C-1", partner_audience_id=LIST_ID),
        email(4, "mary@example.com"),
    ]
    results = by_index(make_client().send(Action.ADD, items))
    assert results[0][0].partner_code == results[1][0].partner_code == "invalid_identifier"
    assert results[2][0].partner_code == "unsupported_slot"
    assert all(results[i][0].outcome == Outcome.OTHER_ERROR and not results[i][0].retryable for i in range(3))
    assert results[3][0].outcome == Outcome.ADDED
    assert identifiers(sent(api_calls(rsps)[0])) == [{"emailAddress": MARY_SHA}]


def test_base_url_override_maps_every_host(rsps):
    base = "http://127.0.0.1:9/c/scope"
    rsps.add(responses.POST, f"{base}/oauth2.googleapis.com/token", json=fixture("token_ok.json"))
    rsps.add(responses.POST, f"{base}/datamanager.googleapis.com/v1/audienceMembers:ingest", json={"requestId": "x"})
    calls = make_client(base_url_override=base).send(Action.ADD, [email(1, "mary@example.com")])
    assert calls[0].results[0].outcome == Outcome.ADDED


# --- tokens -----------------------------------------------------------------------------------------------------


def test_token_is_cached_between_sends(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    client = make_client()
    client.send(Action.ADD, [email(1, "mary@example.com")])
    client.send(Action.ADD, [email(2, "dana@example.com")])
    assert len(token_calls(rsps)) == 1 and len(api_calls(rsps)) == 2
    form = token_calls(rsps)[0].request.body
    assert "grant_type=refresh_token" in form and "client_id=" in form


def test_401_refreshes_the_token_once_then_succeeds(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    calls = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert calls[0].results[0].outcome == Outcome.ADDED and not calls[0].credentials_invalid
    assert len(token_calls(rsps)) == 2 and len(api_calls(rsps)) == 2


def test_401_after_a_refresh_is_invalid_credentials(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    calls = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "dana@example.com")])
    (call,) = calls
    assert call.credentials_invalid and call.status_code == 401
    assert {(r.outcome, r.retryable) for r in call.results} == {(Outcome.INVALID_CREDENTIALS, False)}
    assert call.partner_code == "UNAUTHENTICATED/ACCESS_TOKEN_EXPIRED"
    assert len(token_calls(rsps)) == 2 and len(api_calls(rsps)) == 2


def test_refused_refresh_token_is_invalid_credentials_without_api_call():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
        (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
        assert call.credentials_invalid and call.partner_code == "oauth/invalid_grant"
        assert call.results[0].outcome == Outcome.INVALID_CREDENTIALS
        assert not api_calls(rsps)


def test_token_endpoint_outage_is_retried():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, TOKEN_URL, json={"error": "temporarily_unavailable"}, status=503)
        (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
        assert not call.credentials_invalid and call.status_code == 503
        assert (call.results[0].outcome, call.results[0].retryable) == (Outcome.OTHER_ERROR, True)


def test_missing_secrets_are_invalid_credentials():
    (call,) = make_client(secrets={}).send(Action.ADD, [email(1, "mary@example.com")])
    assert call.credentials_invalid and call.partner_code == "oauth/missing"


# --- google.rpc errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("error_403_permission_denied.json", 403, "PERMISSION_DENIED"),
        ("error_403_service_disabled.json", 403, "PERMISSION_DENIED/SERVICE_DISABLED"),
        ("error_404_not_found.json", 404, "NOT_FOUND"),
        ("error_400_terms.json", 400, "INVALID_ARGUMENT/TERMS_AND_CONDITIONS_NOT_SIGNED"),
    ],
)
def test_final_partner_errors(rsps, name, status, code):
    rsps.add(responses.POST, INGEST_URL, json=fixture(name), status=status)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "dana@example.com")])
    assert (call.status_code, call.partner_code, call.credentials_invalid) == (status, code, False)
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {(Outcome.PARTNER_ERROR, code, False)}
    assert len(api_calls(rsps)) == 1  # not retried by the client either
    assert Client.error_meaning(code)


def test_terms_error_message_names_the_field(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_400_terms.json"), status=400)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert "terms_of_service" in call.results[0].message and "not accepted" in call.results[0].message


def test_insufficient_scope_is_invalid_credentials(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_403_scope_insufficient.json"), status=403)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert call.credentials_invalid and call.results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert call.partner_code == "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_named_invalid_member_fails_and_the_others_are_sent_again(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_400_invalid_member.json"), status=400)
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [email(1, "mary@example.com"), email(2, "dana@example.com"), phone(3, "+18005550100")]
    calls = make_client().send(Action.ADD, items)
    results = by_index(calls)
    bad, bad_call = results[1]
    assert (bad.outcome, bad.partner_code, bad.retryable) == (
        Outcome.PARTNER_ERROR,
        "INVALID_ARGUMENT/INVALID_SHA256_FORMAT",
        False,
    )
    assert bad_call.status_code == 400 and bad_call.item_indices == [1]
    assert results[0][0].outcome == results[2][0].outcome == Outcome.ADDED
    first, second = api_calls(rsps)
    assert len(sent(first)["audienceMembers"]) == 3
    assert identifiers(sent(second)) == [{"emailAddress": MARY_SHA}, {"phoneNumber": US_PHONE_SHA}]
    assert Client.error_meaning(bad.partner_code) == "An identifier was not a SHA-256 hash."


def test_several_named_members_with_descriptions(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_400_hex_encoding.json"), status=400)
    rsps.add(responses.POST, INGEST_URL, json=fixture("ingest_ok.json"))
    items = [email(i, f"user{i}@example.com") for i in range(4)]
    results = by_index(make_client().send(Action.ADD, items))
    assert [results[i][0].outcome for i in range(4)] == [
        Outcome.PARTNER_ERROR,
        Outcome.ADDED,
        Outcome.PARTNER_ERROR,
        Outcome.ADDED,
    ]
    assert results[0][0].message == "Email is not hex encoded."
    assert results[2][0].partner_code == "INVALID_ARGUMENT/INVALID_HEX_ENCODING"


def test_resends_are_bounded(rsps):
    # Every answer names the first member: after the bounded resends, the rest wait for the dispatcher's retry.
    body = fixture("error_400_invalid_member.json")
    body["error"]["details"][1]["fieldViolations"][0]["field"] = "audience_members.audience_members[0]"
    rsps.add(responses.POST, INGEST_URL, json=body, status=400)
    items = [email(i, f"user{i}@example.com") for i in range(5)]
    results = by_index(make_client().send(Action.ADD, items))
    assert len(api_calls(rsps)) == 3
    assert [results[i][0].partner_code for i in range(3)] == ["INVALID_ARGUMENT/INVALID_SHA256_FORMAT"] * 3
    assert {(results[i][0].partner_code, results[i][0].retryable) for i in (3, 4)} == {("not_processed", True)}


def test_429_is_retryable_with_retry_after(rsps):
    rsps.add(
        responses.POST,
        INGEST_URL,
        json=fixture("error_429_resource_exhausted.json"),
        status=429,
        headers={"Retry-After": "30"},
    )
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.partner_code, call.retry_after) == ("RESOURCE_EXHAUSTED/RATE_LIMIT_EXCEEDED", 30.0)
    assert (call.results[0].outcome, call.results[0].retryable) == (Outcome.PARTNER_ERROR, True)


def test_429_uses_retry_info_without_header(rsps):
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_429_resource_exhausted.json"), status=429)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert call.retry_after == 42.0 and call.results[0].retryable


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [("error_500_internal.json", 500, "INTERNAL/INTERNAL_ERROR"), ("error_503_unavailable.json", 503, "UNAVAILABLE")],
)
def test_server_errors_are_retryable(rsps, name, status, code):
    rsps.add(responses.POST, INGEST_URL, json=fixture(name), status=status, headers={"Retry-After": "5"})
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.partner_code, call.retry_after, call.results[0].retryable) == (code, 5.0, True)


def test_non_json_gateway_error_is_retryable(rsps):
    rsps.add(responses.POST, INGEST_URL, body="<html>502 Bad Gateway</html>", status=502)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.partner_code, call.results[0].outcome, call.results[0].retryable) == (
        "http_502",
        Outcome.PARTNER_ERROR,
        True,
    )


def test_unreadable_success_is_retried(rsps):
    rsps.add(responses.POST, INGEST_URL, body="not json", status=200)
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.partner_code, call.results[0].retryable) == ("invalid_response", True)


def test_timeout(rsps):
    rsps.add(responses.POST, INGEST_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.results[0].outcome, call.results[0].retryable, call.status_code) == (Outcome.TIMEOUT, True, None)


def test_connection_error(rsps):
    rsps.add(responses.POST, INGEST_URL, body=requests.exceptions.ConnectionError("connection refused"))
    (call,) = make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert (call.results[0].outcome, call.partner_code, call.results[0].retryable) == (
        Outcome.OTHER_ERROR,
        "connection_error",
        True,
    )


def test_snippets_and_messages_hold_no_identifiers_or_secrets(rsps):
    body = fixture("error_400_hex_encoding.json")
    body["error"]["details"][1]["fieldViolations"][0]["description"] = "mary@example.com is not hex encoded."
    rsps.add(responses.POST, INGEST_URL, json=body, status=400)
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_401_unauthenticated.json"), status=401)
    calls = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "dana@example.com")])
    text = " ".join(c.snippet + " ".join(r.message for r in c.results) for c in calls)
    for secret in ("mary@example.com", MARY_SHA, DANA_SHA, ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in text


def test_error_meanings():
    assert "not accepted" in Client.error_meaning("INVALID_ARGUMENT/TERMS_AND_CONDITIONS_NOT_SIGNED")
    assert Client.error_meaning("PERMISSION_DENIED") == ERROR_CODES["PERMISSION_DENIED"]
    assert Client.error_meaning("NOT_FOUND/SOMETHING_NEW") == ERROR_CODES["NOT_FOUND"]
    assert "retried" in Client.error_meaning("http_503")
    assert Client.error_meaning("oauth/invalid_grant")
    assert Client.error_meaning("not_processed")


def test_quota_is_shared_per_oauth_client():
    assert make_client().quota_key() == f"google_datamanager:{CLIENT_ID}"
    assert make_client().quota.count == 300


# --- test_connection --------------------------------------------------------------------------------------------


def test_connection_reads_the_list_and_validates_an_upload(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("user_list.json"))
    rsps.add(responses.POST, INGEST_URL, json={})
    ok, message = make_client(login_account_id="9876543210").test_connection()
    assert ok, message
    assert "Newsletter subscribers" in message and LIST_ID in message
    read, probe = api_calls(rsps)
    assert read.request.headers["login-account"] == "accountTypes/GOOGLE_ADS/accounts/9876543210"
    assert read.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    body = sent(probe)
    assert body["validateOnly"] is True
    assert identifiers(body) == [{"emailAddress": PROBE_SHA}]
    assert body["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}


def test_connection_without_default_list_lists_the_account(rsps):
    rsps.add(responses.GET, LISTS_URL, json=fixture("user_lists.json"))
    ok, message = make_client(user_list_id="").test_connection()
    assert ok and "1234567890" in message and "audience connection" in message
    (read,) = api_calls(rsps)
    assert read.request.url == f"{LISTS_URL}?pageSize=1"


def test_connection_bad_credentials():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
        ok, message = make_client().test_connection()
    assert not ok and "invalid_grant" in message and REFRESH_TOKEN not in message


def test_connection_refused_token_after_refresh(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("error_401_unauthenticated.json"), status=401)
    ok, message = make_client().test_connection()
    assert not ok and "credentials" in message
    assert len(token_calls(rsps)) == 2


def test_connection_unknown_list(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("error_404_not_found.json"), status=404)
    ok, message = make_client().test_connection()
    assert not ok and "NOT_FOUND" in message and LIST_ID in message and "does not exist" in message


def test_connection_no_permission(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("error_403_permission_denied.json"), status=403)
    ok, message = make_client().test_connection()
    assert not ok and "PERMISSION_DENIED" in message


def test_connection_refuses_a_list_without_contact_data(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("user_list_mobile.json"))
    ok, message = make_client().test_connection()
    assert not ok and "MOBILE_ID" in message and not [c for c in api_calls(rsps) if c.request.method == "POST"]


def test_connection_validate_only_refusal(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", json=fixture("user_list.json"))
    rsps.add(responses.POST, INGEST_URL, json=fixture("error_400_terms.json"), status=400)
    ok, message = make_client().test_connection()
    assert not ok and "TERMS_AND_CONDITIONS_NOT_SIGNED" in message


def test_connection_unreachable(rsps):
    rsps.add(responses.GET, f"{LISTS_URL}/{LIST_ID}", body=requests.exceptions.ConnectionError("refused"))
    ok, message = make_client().test_connection()
    assert not ok and "Could not reach Google" in message
