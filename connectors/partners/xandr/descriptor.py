"""Xandr (Microsoft Curate / Monetize) segments: real-time `rt-segment` or the Batch Segment Service."""

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

MODES = (("realtime", "Real-time (Instant Audience Service)"), ("batch", "Batch (Batch Segment Service file upload)"))


def one_default_segment(settings) -> dict[str, str]:
    """Xandr addresses a segment by id, or by code plus member id: never both."""
    if settings.get("default_segment_id") and settings.get("default_segment_code"):
        return {"default_segment_code": "Give a default segment id or a segment code, not both."}
    return {}


SEGMENT_ID_OR_CODE = r"\d{1,19}|[A-Za-z0-9_.:-]{1,100}"


def batch_needs_segment_id(value: str, settings) -> str:
    """The Batch Segment Service addresses segments by id only."""
    if settings.get("mode") == "batch" and not value.isdigit():
        return "Batch mode sends to segment IDs only: enter the numeric segment ID."
    return ""


PARTNER = Partner(
    key="xandr",
    name="Xandr",
    vendor="Microsoft",
    description=(
        "Adds profiles to a Xandr segment when they join your audience and takes them out when they leave, "
        "using the Xandr user id collected by the Xandr cookie-sync tag."
    ),
    platform_type=PlatformType.DSP,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Xandr API rt-segment, or Batch Segment Service file upload), JSON, token auth",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.XANDR_UID,),
    cookie_sync=True,
    syncs_on=(SyncOn.ADD, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://learn.microsoft.com/en-us/xandr/digital-platform-api/instant-audience-service",
    error_docs_url="https://learn.microsoft.com/en-us/xandr/digital-platform-api/api-semantics",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Xandr member (seat) with an API user; the Instant Audience or Batch Segment Service enabled by Xandr "
        "support for that member.",
        "The Xandr cookie-sync tag on your site, so profiles carry a Xandr user id.",
        "Segments created in Xandr (wait about 20 minutes after creating one before sending to it).",
    ),
    limits=Limits(
        max_batch_size=1_000,
        max_payload_bytes=1_000_000,
        # Instant Audience Service: 100 POST calls per second per member (the client applies it per second).
        requests_per_minute=6_000,
        notes=(
            "Real-time: at most 1,000 users and 100 segments per user per request, JSON body under 1 MB, up to "
            "100 POST calls per second per member; validation problems come back as warnings with status OK. "
            "Batch: one segment file per batch of up to 1,000 users (about one upload a minute, short bursts "
            "allowed); the job is polled briefly and Xandr finishes it within 24 hours. "
            "Login: at most 10 authentications per 5 minutes; the token lasts 2 hours idle (24 hours at most), "
            "so it is cached and renewed only on NOAUTH."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "Segment ID or code",
        required=False,
        max_length=100,
        pattern=SEGMENT_ID_OR_CODE,
        pattern_message="Enter the numeric segment ID, or the segment code (letters, digits and _ . : - only).",
        help_text="Audiences > Segments: the segment's ID (or its code). Leave empty to use the configuration's "
        "default segment.",
    ),
    audience_id_defaults=("default_segment_id", "default_segment_code"),
    audience_id_checks=(batch_needs_segment_id,),
    settings=(
        SettingField(
            "username",
            "API username",
            max_length=100,
            pattern=r"\S+",
            pattern_message="The username has no spaces.",
            help_text="The Xandr API user given by your Xandr representative (not a console-only login).",
        ),
        SettingField(
            "password",
            "API password",
            secret=True,
            max_length=256,
            help_text="That API user's password; logins are cached (at most 10 per 5 minutes are allowed).",
        ),
        SettingField(
            "member_id",
            "Member ID",
            type=FieldType.INTEGER,
            min_value=1,
            help_text="Your Xandr member (seat) ID: Network > Member in the console, or ask your representative.",
        ),
        SettingField(
            "mode",
            "Upload mode",
            type=FieldType.CHOICE,
            choices=MODES,
            default="realtime",
            help_text=(
                "Real-time sends changes within seconds (Instant Audience Service); batch uploads a segment file per "
                "batch of up to 1,000 users (Batch Segment Service, processed by Xandr within 24 hours)."
            ),
        ),
        SettingField(
            "default_segment_id",
            "Default segment ID",
            type=FieldType.INTEGER,
            required=False,
            min_value=1,
            help_text="Used when an audience connection names no segment: Audiences > Segments, ID column.",
        ),
        SettingField(
            "default_segment_code",
            "Default segment code",
            required=False,
            max_length=100,
            pattern=r"[A-Za-z0-9_.:-]+",
            pattern_message="Segment codes use letters, digits and _ . : - only.",
            help_text="Alternative to the id: the segment's integration code (with your member ID).",
        ),
        SettingField(
            "expiration_minutes",
            "Segment membership lifetime (minutes)",
            type=FieldType.INTEGER,
            default=0,
            min_value=0,
            max_value=525_600,
            help_text=(
                "0 = never expires (the platform removes members when they leave the audience; in batch files Xandr "
                "then keeps them for its 180-day maximum). Otherwise Xandr drops the user after this many minutes; "
                "at most one year."
            ),
        ),
    ),
    cross_checks=(one_default_segment,),
)
