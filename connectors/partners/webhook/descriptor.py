"""Generic webhook, signed with Standard Webhooks (HMAC-SHA256, `whsec_` secrets)."""

import base64
import binascii
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from connectors.identifiers import Slot
from connectors.partners.base import (
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
    slot_choices,
)

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def validate_endpoint(value: str) -> None:
    """https everywhere; plain http only on loopback (local receivers and the partner sandbox)."""
    parts = urlsplit(value)
    if parts.scheme != "https" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise ValidationError("The endpoint must use https:// (http:// is allowed on localhost only).")


def validate_whsec(value: str) -> None:
    """A Standard Webhooks secret: `whsec_` followed by base64 of 24 to 64 random bytes."""
    if not value.startswith("whsec_"):
        raise ValidationError("The signing secret starts with whsec_ followed by base64.")
    try:
        raw = base64.b64decode(value[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("The part after whsec_ is not valid base64.") from None
    if not 24 <= len(raw) <= 64:
        raise ValidationError("The signing secret must decode to 24 to 64 bytes.")


def rotation_uses_another_secret(values) -> dict[str, str]:
    """The previous secret kept during a rotation must be another secret than the current one."""
    previous = values.get("previous_signing_secret")
    if previous and previous == values.get("signing_secret"):
        return {"previous_signing_secret": "This is the current signing secret: enter the one being replaced."}
    return {}


PARTNER = Partner(
    key="webhook",
    name="Webhook",
    vendor="Any HTTPS endpoint",
    description=(
        "Sends each profile change as a signed JSON POST (Standard Webhooks) to an endpoint you run: "
        "for in-house systems or partners without a dedicated connector."
    ),
    platform_type=PlatformType.WEBHOOK,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS POST, JSON, Standard Webhooks signature",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.CUSTOMER_ID, Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID, Slot.PARTNER_NUMBER),
    identifier_slot_setting="identifier_slot",
    syncs_on=(SyncOn.ADD, SyncOn.UPDATE, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=True,
    profile_variables=True,
    docs_url="https://www.standardwebhooks.com/",
    error_docs_url="https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md",
    prerequisites=(
        "An HTTPS endpoint that verifies the webhook-signature header and answers 2xx within the timeout.",
        "Your firewall accepts calls from the platform's egress IP addresses.",
    ),
    limits=Limits(max_batch_size=1, notes="One request per profile change; 410 Gone disables the endpoint."),
    cross_checks=(rotation_uses_another_secret,),
    audience_id_field=audience_label_field("payload"),
    settings=(
        SettingField(
            "endpoint_url",
            "Endpoint URL",
            type=FieldType.URL,
            max_length=2000,
            help_text="Where the platform POSTs the profile changes.",
            validators=(validate_endpoint,),
        ),
        SettingField(
            "signing_secret",
            "Signing secret",
            secret=True,
            max_length=200,
            help_text="whsec_ followed by base64; the receiver verifies webhook-signature with it.",
            validators=(validate_whsec,),
        ),
        SettingField(
            "previous_signing_secret",
            "Previous signing secret",
            secret=True,
            required=False,
            max_length=200,
            help_text=(
                "Only while rotating the signing secret: the secret being replaced. While it is set every request "
                "carries two signatures (current and previous), so the receiver accepts them with either key while "
                "it switches; clear it once the receiver verifies with the new secret."
            ),
            validators=(validate_whsec,),
        ),
        SettingField(
            "identifier_slot",
            "Identifier sent",
            type=FieldType.CHOICE,
            choices=slot_choices(Slot.CUSTOMER_ID, Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID, Slot.PARTNER_NUMBER),
            default=Slot.CUSTOMER_ID.value,
            help_text="Only profiles holding this identifier are sent; the others count as skipped.",
        ),
        SettingField(
            "include_profile_variables",
            "Include profile variables",
            type=FieldType.BOOLEAN,
            required=False,
            default=False,
            help_text="Add the audience connection's profile variables to the payload.",
        ),
    ),
)
