"""Campaign Manager 360 offline conversions (API v5 `conversions.batchinsert`)."""

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

SCOPE = "https://www.googleapis.com/auth/ddmconversions"

PARTNER = Partner(
    key="google_cm360",
    name="Google Campaign Manager 360",
    vendor="Google",
    description=(
        "Records an offline conversion on a Floodlight activity when a profile enters the audience or reaches "
        "the journey step, so Campaign Manager 360 can attribute it to your campaigns. Conversions cannot be "
        "taken back, so leaving an audience sends nothing."
    ),
    platform_type=PlatformType.AD_SERVER,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Campaign Manager 360 API v5), JSON, OAuth 2.0",
    mode=Mode.REAL_TIME,
    # Click ids identify the exposure best; matchId is the advertiser's own id passed by the Floodlight tag. An email
    # cannot identify a conversion on its own (v5 only uses it to enhance one), so profiles with only an email are
    # skipped (no identifier) rather than failed.
    identifier_slots=(Slot.GCLID, Slot.CUSTOMER_ID, Slot.MOBILE_AD_ID),
    syncs_on=(SyncOn.ADD,),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://developers.google.com/doubleclick-advertisers/rest/v5/conversions/batchinsert",
    error_docs_url="https://developers.google.com/doubleclick-advertisers/core_errors",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Campaign Manager 360 user profile with access to the Floodlight configuration.",
        "A Google Cloud project with the Campaign Manager 360 API enabled and an OAuth 2.0 client.",
        "A Floodlight activity to record the conversions on.",
    ),
    limits=Limits(
        max_batch_size=1_000,
        # CM360's default API quota: 1 query per second per Google Cloud project ("Queries per minute per user" 60).
        requests_per_minute=60,
        notes=(
            "1,000 conversions per batchinsert; the API's default quota is 60 requests per minute per Google Cloud "
            "project. A conversion's timestamp may be at most 28 days old and a gclid click at most 60 days old. "
            "HTTP 200 may still carry per-conversion errors (hasFailures); only INTERNAL is retried. Conversions "
            "are attributed through the gclid, match ID (customer id) or mobile device ID; an email address alone "
            "cannot identify one. Leaving an audience sends nothing (a conversion cannot be withdrawn)."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "Floodlight activity ID",
        required=False,
        max_length=20,
        pattern=DIGITS_ID,
        pattern_message=DIGITS_MESSAGE,
        help_text="Optional: record this audience's conversions on another Floodlight activity than the "
        "configuration's.",
    ),
    audience_id_defaults=("floodlight_activity_id",),
    settings=(
        SettingField(
            "profile_id",
            "User profile ID",
            max_length=20,
            pattern=DIGITS_ID,
            pattern_message=DIGITS_MESSAGE,
            help_text="Campaign Manager 360 > your name (top right) > the profile ID listed under the account.",
        ),
        SettingField(
            "floodlight_configuration_id",
            "Floodlight configuration ID",
            max_length=20,
            pattern=DIGITS_ID,
            pattern_message=DIGITS_MESSAGE,
            help_text="Advertiser > Floodlight > Floodlight configuration: the ID shown at the top.",
        ),
        SettingField(
            "floodlight_activity_id",
            "Floodlight activity ID",
            max_length=20,
            pattern=DIGITS_ID,
            pattern_message=DIGITS_MESSAGE,
            help_text=(
                "Advertiser > Floodlight > Activities: the ID column of the activity to record. An audience "
                "connection may name another activity of the same configuration as its partner audience id."
            ),
        ),
        *google_oauth_settings(SCOPE),
        SettingField(
            "default_value",
            "Conversion value",
            type=FieldType.DECIMAL,
            default=0,
            min_value=0,
            max_value=1_000_000_000,
            help_text="Revenue recorded with each conversion, in the Floodlight configuration's currency.",
        ),
        SettingField(
            "default_quantity",
            "Conversion quantity",
            type=FieldType.INTEGER,
            default=1,
            min_value=1,
            max_value=1_000_000,
            help_text="Number of items recorded with each conversion.",
        ),
    ),
)
