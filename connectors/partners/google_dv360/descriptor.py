"""Google Display & Video 360 Customer Match (API v4 `firstPartyAndPartnerAudiences.editCustomerMatchMembers`)."""

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
from connectors.partners.validators import DIGITS_ID, DIGITS_MESSAGE, google_oauth_settings

SCOPE = "https://www.googleapis.com/auth/display-video"

# CONSENT_STATUS_DENIED is left out on purpose: DV360 rejects the whole request when a list carries it. Profiles
# without consent are skipped (counted as "no consent") instead of being sent.
CONSENT_CHOICES = (
    ("CONSENT_STATUS_GRANTED", "Granted"),
    ("CONSENT_STATUS_UNSPECIFIED", "Not specified (field left out)"),
)
CONSENT_HELP = (
    "Consent declared for every profile sent. Profiles whose own consent is denied are skipped, never sent: "
    "DV360 refuses requests that carry a denied status."
)

PARTNER = Partner(
    key="google_dv360",
    name="Google Display & Video 360",
    vendor="Google",
    description=(
        "Feeds a Display & Video 360 Customer Match audience from your audience, using hashed email, phone or "
        "mobile advertising id; set up one configuration per advertiser (sub-brand, region)."
    ),
    platform_type=PlatformType.DSP,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Display & Video 360 API v4), JSON, OAuth 2.0, SHA-256 hashed identifiers",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID),
    syncs_on=(SyncOn.ADD, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=True,
    profile_variables=False,
    docs_url=(
        "https://developers.google.com/display-video/api/reference/rest/v4/"
        "firstPartyAndPartnerAudiences/editCustomerMatchMembers"
    ),
    error_docs_url="https://developers.google.com/display-video/api/guides/best-practices/errors",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Display & Video 360 partner that meets Google's Customer Match requirements.",
        "A Google Cloud project with the Display & Video 360 API enabled and an OAuth 2.0 client.",
        "A user with the Admin or Standard role on the advertiser who authorises the client (refresh token).",
        "A Customer Match audience per audience connection (its id is set on the connection).",
    ),
    limits=Limits(
        max_batch_size=500_000,
        requests_per_minute=30,
        notes=(
            "At most 500,000 members per contact-info or mobile-device-id list. editCustomerMatchMembers is "
            "write-intensive (each call counts as 5 writes) against 150 writes/min per advertiser and 700 "
            "writes/min per project; failed requests count too. So at most 30 calls/min per advertiser (shared by "
            "configurations of the same advertiser) and 140 calls/min per OAuth client's project. "
            "429 RESOURCE_EXHAUSTED is retried."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "Customer Match audience ID",
        max_length=20,
        pattern=DIGITS_ID,
        pattern_message=DIGITS_MESSAGE,
        help_text="Display & Video 360 > Audiences > First-party and partner audiences: the audience's ID.",
    ),
    settings=(
        SettingField(
            "advertiser_id",
            "Advertiser ID",
            max_length=20,
            pattern=DIGITS_ID,
            pattern_message=DIGITS_MESSAGE,
            help_text="Display & Video 360 > Advertiser settings > Basic details (the number next to the name).",
        ),
        *google_oauth_settings(SCOPE),
        SettingField(
            "ad_user_data_consent",
            "Ad user data consent",
            type=FieldType.CHOICE,
            choices=CONSENT_CHOICES,
            default="CONSENT_STATUS_GRANTED",
            help_text=CONSENT_HELP,
        ),
        SettingField(
            "ad_personalization_consent",
            "Ad personalization consent",
            type=FieldType.CHOICE,
            choices=CONSENT_CHOICES,
            default="CONSENT_STATUS_GRANTED",
            help_text=CONSENT_HELP,
        ),
    ),
)
