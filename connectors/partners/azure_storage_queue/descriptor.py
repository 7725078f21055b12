"""Azure non-event delivery: one message per profile change into an Azure Storage queue (Put Message, SAS)."""

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
from connectors.partners.validators import identifier_slot_setting, validate_azure_sas_token

SLOTS = (Slot.PARTNER_NUMBER, Slot.CUSTOMER_ID, Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID)

PARTNER = Partner(
    key="azure_storage_queue",
    name="Azure non-event (Storage Queue)",
    vendor="Microsoft Azure",
    description=(
        "Drops a message into your Azure Storage queue for every audience join, change and leave, so your own "
        "jobs can pick the profiles up at their pace."
    ),
    platform_type=PlatformType.QUEUE,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Queue Storage Put Message), XML envelope with base64 JSON message, SAS token",
    mode=Mode.REAL_TIME,
    identifier_slots=SLOTS,
    identifier_slot_setting="identifier_slot",
    syncs_on=(SyncOn.ADD, SyncOn.UPDATE, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=True,
    profile_variables=True,
    docs_url="https://learn.microsoft.com/en-us/rest/api/storageservices/put-message",
    error_docs_url="https://learn.microsoft.com/en-us/rest/api/storageservices/queue-service-error-codes",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "An Azure Storage account with the queue created.",
        "A SAS token for the Queue service with the Add permission and an expiry far enough ahead (renew it here "
        "before it lapses).",
        "If the storage account restricts networks: the platform's egress IP addresses in its firewall rules.",
    ),
    limits=Limits(
        max_batch_size=1,
        max_payload_bytes=64 * 1024,
        # Azure's scalability target for one queue: up to 2,000 (1 KiB) messages per second.
        requests_per_minute=120_000,
        notes=(
            "One message per Put Message call, at most 64 KiB including the base64 encoding (about 48 KiB of "
            "JSON); calls go out concurrently, within Azure's target of 2,000 messages per second for one queue. "
            "Errors come back as XML <Error><Code> (e.g. QueueNotFound, MessageTooLarge, AuthenticationFailed); "
            "ServerBusy, InternalError, OperationTimedOut and other 5xx are retried; an invalid or expired SAS "
            "token pauses the configuration until a new one is saved."
        ),
    ),
    audience_id_field=audience_label_field("message"),
    settings=(
        SettingField(
            "account_name",
            "Storage account name",
            max_length=24,
            pattern=r"[a-z0-9]{3,24}",
            pattern_message="A storage account name has 3 to 24 lowercase letters and digits only.",
            help_text="Azure portal > Storage accounts: the name before .queue.core.windows.net.",
        ),
        SettingField(
            "queue_name",
            "Queue name",
            max_length=63,
            pattern=r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*",
            pattern_message=(
                "A queue name has 3 to 63 lowercase letters, digits and single hyphens, and starts and ends "
                "with a letter or digit."
            ),
            help_text="Storage account > Data storage > Queues: the queue receiving the messages.",
        ),
        SettingField(
            "sas_token",
            "SAS token",
            secret=True,
            max_length=2000,
            help_text=(
                "Storage account > Security + networking > Shared access signature (Queue service, Object "
                "resource type, Add permission; Read too lets Test connection confirm the queue exists), or a "
                "SAS made on the queue itself: paste the token starting with sv= (a leading ? is fine)."
            ),
            validators=(validate_azure_sas_token,),
        ),
        identifier_slot_setting(*SLOTS, default=Slot.PARTNER_NUMBER),
        SettingField(
            "include_profile_variables",
            "Include profile variables",
            type=FieldType.BOOLEAN,
            required=False,
            default=False,
            help_text="Add the audience connection's profile variables to each message.",
        ),
    ),
)
