"""The Trade Desk CRM data segments (`/v3/crmdata/segment`), plus optional real-time first-party data."""

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
from connectors.partners.validators import NO_SPACES, NO_SPACES_MESSAGE

TTD_ID_PATTERN = r"[A-Za-z0-9]{3,32}"
TTD_ID_MESSAGE = "The Trade Desk ids are short codes of letters and digits, e.g. a1b2c3d."

# Real-time first-party data is posted to https://{region}-data.adsrvr.org/data/advertiser; the value is the host
# prefix of The Trade Desk's data servers (use-, usw-, euw-, sin-, tok-data.adsrvr.org).
REALTIME_REGIONS = (
    ("use", "US East"),
    ("usw", "US West"),
    ("euw", "Europe (West)"),
    ("sin", "Asia-Pacific (Singapore)"),
    ("tok", "Japan (Tokyo)"),
)
# Rows of a CRM upload are held this long at most while fewer than 1,500 are due (see Limits.batch_interval_seconds).
BATCH_INTERVAL_SECONDS = 3600


def realtime_needs_secret(settings) -> dict[str, str]:
    """Real-time data is signed (TtdSignature = HMAC-SHA1 of the body keyed with the advertiser secret).

    Only this direction is checked: a stored secret without a region is harmless (real-time stays off), and a
    partial update carries stored secrets but not the unchanged plain settings.
    """
    if settings.get("realtime_region") and not settings.get("advertiser_secret"):
        return {"advertiser_secret": "Real-time data needs the advertiser secret key to sign requests."}
    return {}


PARTNER = Partner(
    key="the_trade_desk",
    name="The Trade Desk",
    vendor="The Trade Desk",
    description=(
        "Uploads your audience to a The Trade Desk CRM data segment (hashed emails, matched through UID2/EUID) "
        "for targeting and suppression; uploads are batched and must hold at least 1,500 profiles. Profiles known "
        "only by their TTD id can go through real-time first-party data instead."
    ),
    platform_type=PlatformType.DSP,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (The Trade Desk API v3 CRM data) with a plain-text file drop; optional signed JSON "
    "real-time data",
    mode=Mode.BATCHED,
    identifier_slots=(Slot.EMAIL, Slot.TTD_ID),
    syncs_on=(SyncOn.ADD, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://partner.thetradedesk.com/v3/portal/data/doc/DataIntegrateCRMData",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A CRM onboarding (UID2/EUID) agreement signed with your The Trade Desk account manager.",
        "A long-lived API token from the Developer Portal (Manage API Tokens) with access to the advertiser.",
        "For real-time data: the advertiser secret key (Advertiser Preferences > Seat Identifiers & Keys).",
    ),
    limits=Limits(
        min_batch_size=1_500,
        max_batch_size=1_000_000,
        batch_interval_seconds=BATCH_INTERVAL_SECONDS,
        notes=(
            "CRM uploads (emails) under 1,500 records are refused by The Trade Desk: changes are held until 1,500 "
            "are due or the oldest has waited an hour, and a smaller batch is not sent but retried later (after the "
            "4-hour retry window it fails as below_minimum_batch). Each upload asks for a drop URL, then PUTs one "
            "value per line. The platform sends changes, not whole audiences, so every upload uses MergeMode Add. "
            "The CRM API has no remove mode (only Add, or Replace with the complete remaining audience), so an email "
            "that leaves the audience cannot be taken out of the segment: its removal fails as "
            "crm_remove_unsupported. TTD ids go through real-time data (when its server and secret are set), where "
            "a removal is sent with a zero TTL. The 1,000,000-line cap per file is the platform's choice, not a "
            "documented vendor limit; real-time requests carry at most 10,000 items."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "CRM data ID",
        required=False,
        max_length=32,
        pattern=r"[A-Za-z0-9]{7}",
        pattern_message="A CRM data ID is 7 letters and digits, e.g. cc9b84o.",
        help_text="The CRM data segment's CrmDataId (7 characters). Leave empty to use the configuration's "
        "default CRM data ID.",
    ),
    audience_id_defaults=("crm_data_id",),
    settings=(
        SettingField(
            "advertiser_id",
            "Advertiser ID",
            max_length=32,
            pattern=TTD_ID_PATTERN,
            pattern_message=TTD_ID_MESSAGE,
            help_text="The Trade Desk platform > Advertiser Preferences (also in the advertiser's page address).",
        ),
        SettingField(
            "crm_data_id",
            "Default CRM data ID",
            required=False,
            max_length=32,
            pattern=TTD_ID_PATTERN,
            pattern_message=TTD_ID_MESSAGE,
            help_text="CRM segment used when an audience connection names none (CrmDataId from the segment list); "
            "also the real-time data name for TTD ids in that case.",
        ),
        SettingField(
            "api_token",
            "API token (TTD-Auth)",
            secret=True,
            max_length=2000,
            pattern=NO_SPACES,
            pattern_message=NO_SPACES_MESSAGE,
            help_text="Developer Portal > user menu > Manage API Tokens > Generate token (long-lived).",
        ),
        SettingField(
            "data_region",
            "PII origin region",
            type=FieldType.CHOICE,
            choices=(("US", "North America"), ("EU", "Europe (EUID)"), ("APAC", "Asia-Pacific")),
            default="US",
            help_text="Where the personal data comes from; decides UID2 or EUID matching for new CRM segments.",
        ),
        SettingField(
            "pii_type",
            "Identifier sent",
            type=FieldType.CHOICE,
            choices=(("EmailHashedUnifiedId2", "Hashed email (SHA-256, Base64)"), ("Email", "Plain email")),
            default="EmailHashedUnifiedId2",
            help_text="Hashed email is recommended: addresses never leave the platform in clear text.",
        ),
        SettingField(
            "merge_mode",
            "Merge mode",
            type=FieldType.CHOICE,
            choices=(("Add", "Add to the segment"),),
            default="Add",
            help_text="Uploads always add: the platform sends the profiles that changed, and Replace would drop "
            "everyone not in the latest upload. The Trade Desk's CRM API cannot remove single profiles, so leavers "
            "stay in the segment until it is rebuilt.",
        ),
        SettingField(
            "retention_enabled",
            "Keep previously matched users",
            type=FieldType.BOOLEAN,
            default=True,
            help_text="Lets The Trade Desk retain matches between uploads (RetentionEnabled).",
        ),
        SettingField(
            "realtime_region",
            "Real-time data server",
            type=FieldType.CHOICE,
            required=False,
            choices=REALTIME_REGIONS,
            help_text="Optional. Region of the real-time data endpoint ({region}-data.adsrvr.org) nearest you; "
            "needed to send profiles known only by their TTD id (added with a 30-day TTL, removed with TTL 0).",
        ),
        SettingField(
            "advertiser_secret",
            "Advertiser secret key",
            secret=True,
            required=False,
            max_length=500,
            pattern=NO_SPACES,
            pattern_message=NO_SPACES_MESSAGE,
            help_text="Needed for real-time data only: Advertiser Preferences > Seat Identifiers & Keys.",
        ),
    ),
    cross_checks=(realtime_needs_secret,),
)
