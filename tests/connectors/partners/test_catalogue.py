"""The partner catalogue: every descriptor is complete, registered under its folder name, and its settings schema
accepts a valid configuration and refuses, field by field, a missing or bad value with that field's error."""

import base64
import importlib
import json
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

import connectors.partners
from connectors.identifiers import Slot
from connectors.partners.base import Kind, Partner
from connectors.partners.registry import REGISTRY, all_partners, get_partner

WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
AZURE_KEY = base64.b64encode(b"a" * 32).decode()
OAUTH = {
    "client_id": "123456789012-abcdefghijklmnop.apps.googleusercontent.com",
    "client_secret": "GOCSPX-abcdefghijklmnop",
    "refresh_token": "1//0gabcdefghijklmnopqrstuvwxyz",
}
OAUTH_BAD = {"client_id": "my-client", "client_secret": "has a space", "refresh_token": "short"}
CLANG = {
    "uuid": "12345678-1234-1234-1234-123456781234",
    "group_id": 42,
    "endpoint_url": "https://clang.example.com/soap/index.php?wsdl",
    "identifier_slot": Slot.EMAIL.value,
}
CLANG_BAD = {
    "uuid": "not-a-uuid",
    "group_id": 0,
    "endpoint_url": "http://clang.example.com/soap",
    "identifier_slot": Slot.PHONE.value,
}

# A complete, valid configuration per partner (every setting given, plain and secret).
VALID = {
    "webhook": {
        "endpoint_url": "https://hooks.example.com/dap",
        "signing_secret": WHSEC,
        "previous_signing_secret": "whsec_" + base64.b64encode(b"p" * 32).decode(),
        "identifier_slot": Slot.CUSTOMER_ID.value,
        "include_profile_variables": True,
    },
    "meta_custom_audiences": {
        "api_version": "v25.0",
        "ad_account_id": "act_1234567890",
        "access_token": "EAAB" + "x" * 60,
        "app_secret": "0123456789abcdef0123456789abcdef",
    },
    "google_dv360": {
        "advertiser_id": "1234567",
        **OAUTH,
        "ad_user_data_consent": "CONSENT_STATUS_GRANTED",
        "ad_personalization_consent": "CONSENT_STATUS_UNSPECIFIED",
    },
    "google_cm360": {
        "profile_id": "7654321",
        "floodlight_configuration_id": "1234567",
        "floodlight_activity_id": "9876543",
        **OAUTH,
        "default_value": "12.50",
        "default_quantity": 2,
    },
    "google_ads_customer_match": {
        "operating_account_id": "123-456-7890",
        "login_account_id": "9876543210",
        "user_list_id": "555555",
        **OAUTH,
        "encoding": "BASE64",
        "ad_user_data_consent": "CONSENT_GRANTED",
        "ad_personalization_consent": "CONSENT_DENIED",
        "terms_of_service_accepted": True,
    },
    "xandr": {
        "username": "api_user",
        "password": "s3cret-Passw0rd!",
        "member_id": 1234,
        "mode": "batch",
        "default_segment_id": 98765,
        "default_segment_code": "",
        "expiration_minutes": 1440,
    },
    "the_trade_desk": {
        "advertiser_id": "a1b2c3d",
        "crm_data_id": "cc9b84o",
        "api_token": "tok" * 20,
        "data_region": "EU",
        "pii_type": "Email",
        "merge_mode": "Add",
        "retention_enabled": False,
        "realtime_region": "euw",
        "advertiser_secret": "secretKey123",
    },
    "azure_event_hubs": {
        "namespace": "dap-events",
        "event_hub": "profile-changes",
        "sas_key_name": "dap-send",
        "sas_key": AZURE_KEY,
        "tier": "basic",
        "identifier_slot": Slot.EMAIL.value,
        "include_profile_variables": True,
    },
    "azure_storage_queue": {
        "account_name": "dapstorage01",
        "queue_name": "profile-changes",
        "sas_token": "?sv=2022-11-02&ss=q&srt=o&sp=a&se=2030-01-01T00:00:00Z&sig=abc%2Bdef%3D",
        "identifier_slot": Slot.CUSTOMER_ID.value,
        "include_profile_variables": False,
    },
    "clang_realtime": {**CLANG},
    "clang_batch": {**CLANG, "batch_interval_minutes": 30},
    "meta_pixel": {"pixel_id": "123456789012345"},
    "google_tag": {"tag_id": "DC-1234567", "floodlight_send_to": "DC-1234567/invmedia/sales0+standard"},
    "xandr_cookie_sync": {"platform_base_url": "https://dap.example.com"},
}

# One bad value per setting, per partner: each must be refused with an error on that setting.
INVALID = {
    "webhook": {
        "endpoint_url": "http://hooks.example.com/dap",
        "signing_secret": "not-a-whsec",
        "previous_signing_secret": WHSEC,  # the current secret again: a rotation needs another one
        "identifier_slot": Slot.XANDR_UID.value,
        "include_profile_variables": "maybe",
    },
    "meta_custom_audiences": {
        "api_version": "v19.0",
        "ad_account_id": "act_12ab",
        "access_token": "EAAB token with spaces in it",
        "app_secret": "not-hex",
    },
    "google_dv360": {
        "advertiser_id": "adv-1",
        **OAUTH_BAD,
        "ad_user_data_consent": "CONSENT_STATUS_DENIED",
        "ad_personalization_consent": "GRANTED",
    },
    "google_cm360": {
        "profile_id": "12a",
        "floodlight_configuration_id": "config",
        "floodlight_activity_id": "-1",
        **OAUTH_BAD,
        "default_value": "-1",
        "default_quantity": 0,
    },
    "google_ads_customer_match": {
        "operating_account_id": "12345",
        "login_account_id": "123-45-67890",
        "user_list_id": "list-1",
        **OAUTH_BAD,
        "encoding": "HASHED",
        "ad_user_data_consent": "GRANTED",
        "ad_personalization_consent": "CONSENT_STATUS_GRANTED",
        "terms_of_service_accepted": False,
    },
    "xandr": {
        "username": "api user",
        "password": "x" * 300,
        "member_id": 0,
        "mode": "stream",
        "default_segment_id": -5,
        "default_segment_code": "bad code!",
        "expiration_minutes": -2,
    },
    "the_trade_desk": {
        "advertiser_id": "a!",
        "crm_data_id": "x",
        "api_token": "has space",
        "data_region": "LATAM",
        "pii_type": "Phone",
        "merge_mode": "Remove",
        "retention_enabled": "maybe",
        "realtime_region": "mars",
        "advertiser_secret": "has space",
    },
    "azure_event_hubs": {
        "namespace": "1abc",
        "event_hub": "-bad",
        "sas_key_name": "bad name",
        "sas_key": "not base64!!",
        "tier": "free",
        "identifier_slot": Slot.XANDR_UID.value,
        "include_profile_variables": "maybe",
    },
    "azure_storage_queue": {
        "account_name": "DapStorage",
        "queue_name": "bad--name",
        "sas_token": "sp=a&se=2030-01-01",
        "identifier_slot": Slot.TTD_ID.value,
        "include_profile_variables": "perhaps",
    },
    "clang_realtime": {**CLANG_BAD},
    "clang_batch": {**CLANG_BAD, "batch_interval_minutes": 4},
    "meta_pixel": {"pixel_id": "pixel-1"},
    "google_tag": {"tag_id": "UA-12345-1", "floodlight_send_to": "DC-1234567/invmedia"},
    "xandr_cookie_sync": {"platform_base_url": "http://dap.example.com"},
}

# The setting whose value a rendered tag-based snippet must contain.
SNIPPET_ID = {"meta_pixel": "pixel_id", "google_tag": "tag_id", "xandr_cookie_sync": "platform_base_url"}

# Partners whose error codes the stats screens show with a link to the partner's error documentation (DESIGN.md).
ERROR_CODE_PARTNERS = {
    "xandr",
    "google_cm360",
    "google_dv360",
    "azure_storage_queue",
    "meta_custom_audiences",
    "clang_batch",
}

EXPECTED_KEYS = set(VALID)
PARTNERS = sorted(REGISTRY)
SERVER_TO_SERVER = [k for k in PARTNERS if REGISTRY[k].kind == Kind.SERVER_TO_SERVER]
TAG_BASED = [k for k in PARTNERS if REGISTRY[k].kind == Kind.TAG_BASED]
FIELDS = [(k, f.name) for k in PARTNERS for f in REGISTRY[k].settings]
CREDENTIAL_NAME = re.compile(r"(token|secret|password|uuid|sas_key$)")
# Optional settings another setting depends on (cross-checks): left out together (the rule has its own test).
LEFT_OUT_WITH = {("the_trade_desk", "advertiser_secret"): "realtime_region"}


def error_dict(partner: Partner, data: dict, **kwargs) -> dict:
    with pytest.raises(ValidationError) as exc:
        partner.clean_settings(data, **kwargs)
    return exc.value.message_dict


# --- the catalogue itself ---------------------------------------------------------------------------------------


def test_registry_holds_every_partner_folder():
    folders = {p.parent.name for p in Path(connectors.partners.__file__).parent.glob("*/descriptor.py")}
    assert folders == set(REGISTRY) == EXPECTED_KEYS
    assert {p.key for p in all_partners()} == EXPECTED_KEYS
    assert [p.kind for p in all_partners()][-len(TAG_BASED) :] == [Kind.TAG_BASED] * len(TAG_BASED)


def test_test_data_covers_every_setting():
    for key in PARTNERS:
        names = {f.name for f in REGISTRY[key].settings}
        assert set(VALID[key]) == names, key
        assert set(INVALID[key]) == names, key


@pytest.mark.parametrize("key", PARTNERS)
def test_descriptor_is_complete(key):
    partner = get_partner(key)
    module = importlib.import_module(f"connectors.partners.{key}.descriptor")
    assert module.PARTNER is partner and partner.key == key
    for attr in ("name", "vendor", "description", "platform_type", "protocol", "mode", "docs_url"):
        assert getattr(partner, attr), f"{key}.{attr}"
    assert partner.docs_url.startswith("https://")
    assert not partner.error_docs_url or partner.error_docs_url.startswith("https://")
    assert partner.prerequisites
    assert len(set(partner.identifier_slots)) == len(partner.identifier_slots)
    assert set(partner.identifier_slots) <= set(Slot.values)
    json.dumps(partner.describe())
    for f in partner.settings:
        assert f.label and f.help_text, f"{key}.{f.name}"
        if CREDENTIAL_NAME.search(f.name):
            assert f.secret, f"{key}.{f.name} is a credential and must be secret"


@pytest.mark.parametrize("key", SERVER_TO_SERVER)
def test_server_to_server_partner_declares_limits_and_sync(key):
    partner = REGISTRY[key]
    limits = partner.limits
    assert limits is not None and limits.notes
    assert 1 <= limits.min_batch_size <= limits.max_batch_size
    assert partner.identifier_slots and partner.syncs_on and partner.usable_in
    assert not partner.snippet_template
    if key in ERROR_CODE_PARTNERS:
        assert partner.error_docs_url


@pytest.mark.parametrize("key", TAG_BASED)
def test_tag_based_partner_renders_its_snippet(key):
    partner = REGISTRY[key]
    plain, secrets = partner.clean_settings(VALID[key])
    snippet = partner.render_snippet({**plain, **secrets})
    assert plain[SNIPPET_ID[key]] in snippet
    assert "{" + SNIPPET_ID[key] + "}" not in snippet
    assert partner.limits is None and not partner.syncs_on


def test_specific_partner_facts():
    assert REGISTRY["google_dv360"].multiple_configs
    assert not REGISTRY["meta_custom_audiences"].multiple_configs
    assert REGISTRY["meta_custom_audiences"].limits.max_batch_size == 10_000
    assert REGISTRY["google_cm360"].limits.max_batch_size == 1_000
    assert REGISTRY["google_cm360"].syncs_on == ("add",)
    assert REGISTRY["google_ads_customer_match"].limits.max_batch_size == 10_000
    assert REGISTRY["xandr"].limits.max_batch_size == 1_000
    assert REGISTRY["the_trade_desk"].limits.min_batch_size == 1_500
    assert REGISTRY["the_trade_desk"].mode == "batched" and REGISTRY["clang_batch"].mode == "batched"
    assert REGISTRY["azure_storage_queue"].limits.max_payload_bytes == 64 * 1024
    assert REGISTRY["xandr"].cookie_sync and REGISTRY["xandr_cookie_sync"].cookie_sync
    assert REGISTRY["xandr_cookie_sync"].identifier_slots == (Slot.XANDR_UID,)
    assert REGISTRY["azure_event_hubs"].platform_type == "event_hub"
    assert REGISTRY["azure_storage_queue"].platform_type == "queue"


# --- settings validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", PARTNERS)
def test_valid_settings_are_accepted_and_secrets_split_out(key):
    partner = REGISTRY[key]
    plain, secrets = partner.clean_settings(VALID[key])
    assert set(secrets) == {f.name for f in partner.secret_fields}
    assert not set(plain) & set(secrets)
    if partner.identifier_slot_setting:
        chosen = partner.identifier_slots_for(plain)
        assert chosen == (VALID[key][partner.identifier_slot_setting],)
        assert set(chosen) <= set(partner.identifier_slots)


@pytest.mark.parametrize("key", PARTNERS)
def test_unknown_setting_is_refused(key):
    assert "not_a_setting" in error_dict(REGISTRY[key], {**VALID[key], "not_a_setting": "x"})


@pytest.mark.parametrize(("key", "name"), FIELDS)
def test_missing_setting(key, name):
    partner = REGISTRY[key]
    field = partner.get_field(name)
    data = {k: v for k, v in VALID[key].items() if k not in (name, LEFT_OUT_WITH.get((key, name)))}
    if field.required and field.default is None:
        assert error_dict(partner, data)[name] == ["This field is required."]
        return
    plain, secrets = partner.clean_settings(data)
    if field.default is not None:
        assert plain[name] == field.default
    else:
        assert name not in plain and name not in secrets


@pytest.mark.parametrize(("key", "name"), FIELDS)
def test_invalid_setting_is_refused_on_that_field(key, name):
    errors = error_dict(REGISTRY[key], {**VALID[key], name: INVALID[key][name]})
    assert name in errors
    assert all(message.strip() for message in errors[name])


def test_secret_left_empty_keeps_stored_value():
    partner = REGISTRY["google_dv360"]
    data = {**VALID["google_dv360"], "client_secret": "", "refresh_token": None}
    _, secrets = partner.clean_settings(data, existing_secrets={"client_secret": "old", "refresh_token": "old-rt"})
    assert secrets["client_secret"] == "old" and secrets["refresh_token"] == "old-rt"


# --- partner-specific rules -------------------------------------------------------------------------------------


def test_meta_ad_account_accepts_digits_with_or_without_act_prefix():
    partner = REGISTRY["meta_custom_audiences"]
    for value in ("1234567890", "act_1234567890"):
        plain, _ = partner.clean_settings({**VALID["meta_custom_audiences"], "ad_account_id": value})
        assert plain["ad_account_id"] == value
    plain, secrets = partner.clean_settings(
        {k: v for k, v in VALID["meta_custom_audiences"].items() if k != "app_secret"}
    )
    assert plain["api_version"] == "v25.0" and "app_secret" not in secrets


def test_google_ads_customer_ids_accept_dashes_and_normalise():
    from connectors.partners.google_ads_customer_match.descriptor import normalize_customer_id

    partner = REGISTRY["google_ads_customer_match"]
    for value in ("123-456-7890", "1234567890"):
        plain, _ = partner.clean_settings({**VALID["google_ads_customer_match"], "operating_account_id": value})
        assert normalize_customer_id(plain["operating_account_id"]) == "1234567890"


def test_dv360_refuses_denied_consent():
    errors = error_dict(
        REGISTRY["google_dv360"], {**VALID["google_dv360"], "ad_personalization_consent": "CONSENT_STATUS_DENIED"}
    )
    assert "ad_personalization_consent" in errors


def test_xandr_segment_id_and_code_are_exclusive():
    partner = REGISTRY["xandr"]
    errors = error_dict(partner, {**VALID["xandr"], "default_segment_code": "retargeting_1"})
    assert list(errors) == ["default_segment_code"]
    plain, _ = partner.clean_settings({**VALID["xandr"], "default_segment_id": None, "default_segment_code": "rt_1"})
    assert plain["default_segment_code"] == "rt_1"


def test_trade_desk_real_time_needs_the_advertiser_secret():
    partner = REGISTRY["the_trade_desk"]
    data = {**VALID["the_trade_desk"], "advertiser_secret": ""}
    assert list(error_dict(partner, data)) == ["advertiser_secret"]
    _, secrets = partner.clean_settings(data, existing_secrets={"advertiser_secret": "stored"})
    assert secrets["advertiser_secret"] == "stored"
    plain, _ = partner.clean_settings({**data, "realtime_region": ""})
    assert "realtime_region" not in plain
    # A partial update (e.g. only the merge mode) of a real-time configuration stays valid.
    partner.clean_settings(
        {"merge_mode": "Add"}, existing_secrets={"api_token": "t", "advertiser_secret": "s"}, partial=True
    )


def test_trade_desk_defaults():
    partner = REGISTRY["the_trade_desk"]
    required = {k: VALID["the_trade_desk"][k] for k in ("advertiser_id", "api_token")}
    plain, _ = partner.clean_settings(required)
    assert plain["pii_type"] == "EmailHashedUnifiedId2" and plain["merge_mode"] == "Add"
    assert plain["retention_enabled"] is True and plain["data_region"] == "US"


def test_azure_event_hubs_rules():
    partner = REGISTRY["azure_event_hubs"]
    for name, value in (("namespace", "a" * 51), ("namespace", "dap-events-"), ("event_hub", "hub_")):
        assert name in error_dict(partner, {**VALID["azure_event_hubs"], name: value})
    plain, _ = partner.clean_settings({**VALID["azure_event_hubs"], "identifier_slot": None})
    assert partner.identifier_slots_for(plain) == (Slot.PARTNER_NUMBER,)


@pytest.mark.parametrize("name", ["ab", "a" * 64, "-queue", "queue-", "Queue", "que_ue"])
def test_azure_queue_name_rules(name):
    errors = error_dict(REGISTRY["azure_storage_queue"], {**VALID["azure_storage_queue"], "queue_name": name})
    assert "queue_name" in errors


@pytest.mark.parametrize("token", ["https://acct.queue.core.windows.net/q?sv=1&sig=2", "sv=2022-11-02&sp=a"])
def test_azure_sas_token_rules(token):
    errors = error_dict(REGISTRY["azure_storage_queue"], {**VALID["azure_storage_queue"], "sas_token": token})
    assert "sas_token" in errors


def test_clang_batch_interval_defaults_to_twenty_minutes():
    data = {k: v for k, v in VALID["clang_batch"].items() if k not in ("batch_interval_minutes", "endpoint_url")}
    plain, _ = REGISTRY["clang_batch"].clean_settings(data)
    assert plain["batch_interval_minutes"] == 20 and plain["endpoint_url"].startswith("https://")


def test_google_tag_floodlight_must_match_the_tag_and_is_optional():
    partner = REGISTRY["google_tag"]
    errors = error_dict(
        partner, {"tag_id": "DC-7654321", "floodlight_send_to": VALID["google_tag"]["floodlight_send_to"]}
    )
    assert list(errors) == ["floodlight_send_to"]
    plain, _ = partner.clean_settings({"tag_id": "G-ABC123XYZ9"})
    snippet = partner.render_snippet(plain)
    assert "gtag('config', 'G-ABC123XYZ9');" in snippet and "var floodlightSendTo = '';" in snippet


def test_xandr_cookie_sync_pixel_redirects_to_our_endpoint():
    partner = REGISTRY["xandr_cookie_sync"]
    plain, _ = partner.clean_settings({"platform_base_url": "https://dap.example.com/tenant-a"})
    snippet = partner.render_snippet(plain)
    assert (
        'src="https://ib.adnxs.com/getuid?https://dap.example.com/tenant-a/sync/xandr_cookie_sync/'
        '?p=DAP_SYNC_TOKEN&uid=$UID"\n' in snippet
    )
    for bad in ("https://dap.example.com/", "https://dap.example.com/?x=1", 'https://dap.example.com/a"b'):
        assert "platform_base_url" in error_dict(partner, {"platform_base_url": bad})


def test_meta_pixel_snippet_is_the_base_code():
    snippet = REGISTRY["meta_pixel"].render_snippet({"pixel_id": "123456789012345"})
    assert "fbq('init', '123456789012345');" in snippet
    assert "https://www.facebook.com/tr?id=123456789012345&ev=PageView&noscript=1" in snippet
    assert "connect.facebook.net/en_US/fbevents.js" in snippet
