"""Azure Event Hubs: profile changes posted as a batch of events (REST "Send batch events", SAS token)."""

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
    audience_label_field,
)
from connectors.partners.validators import identifier_slot_setting, validate_base64_key

SLOTS = (Slot.PARTNER_NUMBER, Slot.CUSTOMER_ID, Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID)

# Largest request body per tier (the limits below declare the smallest, which fits every tier).
MAX_BATCH_BYTES_BY_TIER = {
    "basic": 256 * 1024,
    "standard": 1024 * 1024,
    "premium": 1024 * 1024,
    "dedicated": 1024 * 1024,
}

AZURE_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,254}[A-Za-z0-9])?"
AZURE_NAME_MESSAGE = (
    "Use 1 to 256 letters, digits, periods, hyphens or underscores, starting and ending with a letter or digit."
)

PARTNER = Partner(
    key="azure_event_hubs",
    name="Azure Event Hubs",
    vendor="Microsoft Azure",
    description=(
        "Streams every audience join, change and leave as an event into your Azure event hub, for your own "
        "systems and data pipelines to consume."
    ),
    platform_type=PlatformType.EVENT_HUB,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Event Hubs send batch), JSON (application/vnd.microsoft.servicebus.json), SAS token",
    mode=Mode.REAL_TIME,
    identifier_slots=SLOTS,
    identifier_slot_setting="identifier_slot",
    syncs_on=(SyncOn.ADD, SyncOn.UPDATE, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=True,
    profile_variables=True,
    docs_url="https://learn.microsoft.com/en-us/rest/api/eventhub/send-batch-events",
    error_docs_url="https://learn.microsoft.com/en-us/azure/event-hubs/event-hubs-messaging-exceptions",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "An Event Hubs namespace and event hub in your Azure subscription.",
        "A shared access policy with the Send claim (on the event hub, preferably) and one of its keys.",
        "If the namespace restricts networks: the platform's egress IP addresses in its IP firewall rules.",
    ),
    limits=Limits(
        max_batch_size=1_000,
        max_payload_bytes=256 * 1024,
        notes=(
            "A batch request is limited by size, not count: 256 KB on Basic, 1 MB on Standard, Premium and "
            "Dedicated (the tier setting raises the cap); the platform packs each send into as few requests as "
            "fit and caps them at 1,000 events. Throughput is bounded by the namespace's throughput units "
            "(about 1 MB or 1,000 events per second each), not by a request quota: beyond them Azure answers "
            "503 server busy, retried after 10 seconds. 201 is success, 401 invalid credentials (the "
            "configuration is paused), 403/404/413 partner errors, 429 and 5xx retried."
        ),
    ),
    audience_id_field=audience_label_field("event"),
    settings=(
        SettingField(
            "namespace",
            "Namespace",
            max_length=50,
            pattern=r"[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]",
            pattern_message=(
                "A namespace name has 6 to 50 letters, digits or hyphens, starts with a letter and ends with a "
                "letter or digit (the part before .servicebus.windows.net)."
            ),
            help_text="Azure portal > Event Hubs > your namespace: the name before .servicebus.windows.net.",
        ),
        SettingField(
            "event_hub",
            "Event hub name",
            max_length=256,
            pattern=AZURE_NAME,
            pattern_message=AZURE_NAME_MESSAGE,
            help_text="Namespace > Entities > Event Hubs: the event hub receiving the events.",
        ),
        SettingField(
            "sas_key_name",
            "Shared access policy name",
            max_length=256,
            pattern=AZURE_NAME,
            pattern_message=AZURE_NAME_MESSAGE,
            help_text="Event hub > Settings > Shared access policies: a policy with only the Send claim.",
        ),
        SettingField(
            "sas_key",
            "Shared access key",
            secret=True,
            max_length=200,
            help_text="The policy's primary (or secondary) key; the platform signs short-lived SAS tokens with it.",
            validators=(validate_base64_key,),
        ),
        SettingField(
            "tier",
            "Pricing tier",
            type=FieldType.CHOICE,
            choices=(("basic", "Basic"), ("standard", "Standard"), ("premium", "Premium"), ("dedicated", "Dedicated")),
            default="standard",
            help_text="Namespace > Overview > Pricing tier; decides the largest batch (256 KB Basic, 1 MB otherwise).",
        ),
        identifier_slot_setting(*SLOTS, default=Slot.PARTNER_NUMBER),
        SettingField(
            "include_profile_variables",
            "Include profile variables",
            type=FieldType.BOOLEAN,
            required=False,
            default=False,
            help_text="Add the audience connection's profile variables to each event.",
        ),
    ),
)
