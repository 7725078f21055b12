"""Google Ads Customer Match through the Data Manager API (`audienceMembers:ingest` / `audienceMembers:remove`)."""

from connectors.identifiers import Slot
from connectors.partners.base import (
    COMMON_PREREQUISITES,
    FieldType,
    Kind,
    Limits,
    Mode,
    Partner,
    PlatformType,
    SettingField,
    SyncOn,
    UsableIn,
)
from connectors.partners.validators import DIGITS_ID, DIGITS_MESSAGE, google_oauth_settings, require_true

SCOPE = "https://www.googleapis.com/auth/datamanager"

# Google shows customer ids as 123-456-7890; the API wants the 10 digits (the client strips the dashes).
CUSTOMER_ID_PATTERN = r"\d{3}-?\d{3}-?\d{4}"
CUSTOMER_ID_MESSAGE = "Enter the 10-digit Google Ads customer ID, e.g. 123-456-7890 or 1234567890."

CONSENT_CHOICES = (
    ("CONSENT_GRANTED", "Granted"),
    ("CONSENT_DENIED", "Denied"),
    ("CONSENT_STATUS_UNSPECIFIED", "Not specified"),
)


def normalize_customer_id(value: str) -> str:
    """123-456-7890 -> 1234567890 (what the API expects)."""
    return value.replace("-", "")


PARTNER = Partner(
    key="google_ads_customer_match",
    name="Google Ads Customer Match",
    vendor="Google",
    description=(
        "Keeps a Google Ads Customer Match list (Search, YouTube, Gmail, Display) in step with your audience, "
        "matching profiles on hashed email or phone number."
    ),
    platform_type=PlatformType.SEARCH_ADS,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Data Manager API v1), JSON, OAuth 2.0, SHA-256 hashed identifiers",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.EMAIL, Slot.PHONE),
    syncs_on=(SyncOn.ADD, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest",
    error_docs_url="https://developers.google.com/data-manager/api/devguides/concepts/understand-errors",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Google Ads account eligible for Customer Match, with the Customer Match terms accepted.",
        "A Google Cloud project with the Data Manager API enabled and an OAuth 2.0 client.",
        "A user with access to the Google Ads account (or its manager account) who authorises the client.",
        "A Customer Match list per audience connection, or a default list below.",
    ),
    limits=Limits(
        max_batch_size=10_000,
        requests_per_minute=300,
        notes=(
            "10,000 audience members and at most 10 identifiers per member per request. 300 ingestion requests "
            "per minute and 100,000 per day per Google Cloud project; 429 RESOURCE_EXHAUSTED is retried. One "
            "invalid member fails the whole request."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "Customer Match list ID",
        required=False,
        max_length=20,
        pattern=DIGITS_ID,
        pattern_message=DIGITS_MESSAGE,
        help_text="Google Ads > Tools > Audience manager: the user list's ID. Leave empty to use the "
        "configuration's default list.",
    ),
    audience_id_defaults=("user_list_id",),
    settings=(
        SettingField(
            "operating_account_id",
            "Google Ads customer ID",
            max_length=12,
            pattern=CUSTOMER_ID_PATTERN,
            pattern_message=CUSTOMER_ID_MESSAGE,
            help_text="The account that owns the list: shown top right in Google Ads (123-456-7890).",
        ),
        SettingField(
            "login_account_id",
            "Manager (login) customer ID",
            required=False,
            max_length=12,
            pattern=CUSTOMER_ID_PATTERN,
            pattern_message=CUSTOMER_ID_MESSAGE,
            help_text="Only when access goes through a manager account: that manager account's customer ID.",
        ),
        SettingField(
            "user_list_id",
            "Default Customer Match list ID",
            required=False,
            max_length=20,
            pattern=DIGITS_ID,
            pattern_message=DIGITS_MESSAGE,
            help_text=(
                "Tools > Shared library > Audience manager > the list's ID. Used when an audience connection "
                "names no list of its own."
            ),
        ),
        *google_oauth_settings(SCOPE),
        SettingField(
            "encoding",
            "Hash encoding",
            type=FieldType.CHOICE,
            choices=(("HEX", "Hex"), ("BASE64", "Base64")),
            default="HEX",
            help_text="How SHA-256 hashes are written in the request; both are accepted by Google.",
        ),
        SettingField(
            "ad_user_data_consent",
            "Ad user data consent",
            type=FieldType.CHOICE,
            choices=CONSENT_CHOICES,
            default="CONSENT_GRANTED",
            help_text="Consent declared for the members sent (EEA users need Granted to be matched).",
        ),
        SettingField(
            "ad_personalization_consent",
            "Ad personalization consent",
            type=FieldType.CHOICE,
            choices=CONSENT_CHOICES,
            default="CONSENT_GRANTED",
            help_text="Consent declared for the members sent (EEA users need Granted to be targeted).",
        ),
        SettingField(
            "terms_of_service_accepted",
            "Customer Match terms accepted",
            type=FieldType.BOOLEAN,
            help_text="Confirm that the Customer Match terms of service are accepted for this Google Ads account.",
        ),
    ),
    cross_checks=(
        require_true("terms_of_service_accepted", "Accept the Customer Match terms in Google Ads, then tick this box."),
    ),
)
