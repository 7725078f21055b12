"""Clang real-time: each profile change goes to Clang (email marketing) at once over its SOAP 1.1 API."""

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
from connectors.partners.validators import UUID_PATTERN, identifier_slot_setting

SLOTS = (Slot.CUSTOMER_ID, Slot.EMAIL)
DEFAULT_ENDPOINT = "https://login.myclang.com/app/api/soap/public/index.php?wsdl"
DOCS_URL = "https://login.myclang.com/app/api/soap/public/index.php?wsdl"

# Shared with clang_batch: the same account, group and identifier choice.
CLANG_SETTINGS = (
    SettingField(
        "uuid",
        "API token (uuid)",
        secret=True,
        max_length=36,
        pattern=UUID_PATTERN,
        pattern_message="The Clang API token is a uuid like 12345678-1234-1234-1234-123456781234.",
        help_text="Clang > Account > API tokens (the uuid passed first to every SOAP call).",
    ),
    SettingField(
        "group_id",
        "Group ID",
        type=FieldType.INTEGER,
        min_value=1,
        help_text=(
            "Clang > Groups: the numeric ID of the group that mirrors the audience. An audience connection whose "
            "partner audience id holds another group ID sends to that group instead."
        ),
    ),
    SettingField(
        "endpoint_url",
        "SOAP endpoint (WSDL)",
        type=FieldType.URL,
        https_only=True,
        max_length=500,
        default=DEFAULT_ENDPOINT,
        help_text="Leave the default unless Clang gave you a dedicated environment URL.",
    ),
    identifier_slot_setting(*SLOTS, default=Slot.CUSTOMER_ID),
)

# An audience connection may name another Clang group than the configuration's.
CLANG_GROUP = SettingField(
    "partner_audience_id",
    "Group ID",
    required=False,
    max_length=19,
    pattern=r"[1-9]\d{0,18}",
    pattern_message="Enter the numeric Clang group ID.",
    help_text="Optional: Clang > Groups, the numeric ID of the group for this audience. Leave empty to use the "
    "configuration's group.",
)

PARTNER = Partner(
    key="clang_realtime",
    name="Clang real-time",
    vendor="Clang",
    description=(
        "Adds profiles to a Clang group the moment they join your audience, updates them when they change and "
        "takes them out when they leave, ready for your email campaigns."
    ),
    platform_type=PlatformType.ESP,
    kind=Kind.SERVER_TO_SERVER,
    protocol="SOAP 1.1 over HTTPS (Clang API), uuid token",
    mode=Mode.REAL_TIME,
    identifier_slots=SLOTS,
    identifier_slot_setting="identifier_slot",
    syncs_on=(SyncOn.ADD, SyncOn.UPDATE, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=True,
    docs_url=DOCS_URL,
    error_docs_url=DOCS_URL,
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Clang account with API access and an API token (uuid).",
        "The Clang group that receives the profiles.",
    ),
    limits=Limits(
        max_batch_size=1,
        notes=(
            "One short set of SOAP calls per change: customer lookup by external id or email, customer insert or "
            "update, then group_addMember; removal is per member (group_removeMember). Every answer carries a code "
            "(0 = ok) and msg; fault 107 'customer already member' counts as done."
        ),
    ),
    audience_id_field=CLANG_GROUP,
    audience_id_defaults=("group_id",),
    settings=CLANG_SETTINGS,
)
