"""Clang batch: new, modified and removed profiles collected and sent to Clang in bulk every few minutes (SOAP)."""

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
from connectors.partners.clang_realtime.descriptor import CLANG_GROUP, CLANG_SETTINGS, DOCS_URL, SLOTS

PARTNER = Partner(
    key="clang_batch",
    name="Clang batch",
    vendor="Clang",
    description=(
        "Sends new, changed and removed audience members to a Clang group in batches of about 500 every "
        "20 minutes: lighter on Clang than real-time for large audiences."
    ),
    platform_type=PlatformType.ESP,
    kind=Kind.SERVER_TO_SERVER,
    protocol="SOAP 1.1 over HTTPS (Clang API bulk operations), uuid token",
    mode=Mode.BATCHED,
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
        max_batch_size=500,
        # Rows wait until a full bulk call of 500 is due or the oldest has waited 20 minutes (Clang's rhythm).
        min_batch_size=500,
        batch_interval_seconds=1200,
        notes=(
            "About 500 records per bulk call (customer_insertBulkUnique, group_addMembersInBulk); removals have "
            "no bulk call and go one by one (group_removeMember). Responses carry code (0 = ok) and msg; fault "
            "107 'customer already member' counts as done."
        ),
    ),
    audience_id_field=CLANG_GROUP,
    audience_id_defaults=("group_id",),
    settings=(
        *CLANG_SETTINGS,
        SettingField(
            "batch_interval_minutes",
            "Send every (minutes)",
            type=FieldType.INTEGER,
            default=20,
            min_value=5,
            max_value=1440,
            help_text="How often collected changes are sent; 20 minutes is Clang's usual rhythm, 5 at the least.",
        ),
    ),
)
