"""Meta Custom Audiences (Graph API `/{audience_id}/users`): hashed customer lists for Facebook and Instagram ads."""

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
from connectors.partners.validators import DIGITS_ID, NO_SPACES_MESSAGE

API_VERSIONS = (("v26.0", "v26.0 (current)"), ("v25.0", "v25.0"))

PARTNER = Partner(
    key="meta_custom_audiences",
    name="Meta Custom Audiences",
    vendor="Meta",
    description=(
        "Keeps a Facebook and Instagram Custom Audience in step with your audience: profiles are matched on "
        "hashed email, phone or mobile advertising id, added when they join and removed when they leave."
    ),
    platform_type=PlatformType.SOCIAL,
    kind=Kind.SERVER_TO_SERVER,
    protocol="HTTPS REST (Graph API), JSON, SHA-256 hashed identifiers",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.EMAIL, Slot.PHONE, Slot.MOBILE_AD_ID),
    syncs_on=(SyncOn.ADD, SyncOn.REMOVE),
    usable_in=(UsableIn.AUDIENCES, UsableIn.JOURNEYS),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences/",
    error_docs_url="https://developers.facebook.com/docs/graph-api/guides/error-handling/",
    prerequisites=(
        *COMMON_PREREQUISITES,
        "A Meta ad account whose Custom Audience terms have been accepted in Ads Manager.",
        "A system-user access token with the ads_management permission on that ad account "
        "(user tokens expire after about 60 days).",
        "A customer-list Custom Audience per audience connection (its id is set on the connection).",
    ),
    limits=Limits(
        max_batch_size=10_000,
        notes=(
            "10,000 rows per request. Throughput is limited per ad account per hour (business use case "
            "custom_audience), reported in the X-Business-Use-Case-Usage header; codes 4, 17, 613 and 80xxx "
            "are throttling and are retried with backoff."
        ),
    ),
    audience_id_field=SettingField(
        "partner_audience_id",
        "Custom audience ID",
        max_length=20,
        pattern=DIGITS_ID,
        pattern_message="Enter the custom audience ID (digits only).",
        help_text="Ads Manager > Audiences: the ID of the customer-list Custom Audience this audience fills.",
    ),
    settings=(
        SettingField(
            "api_version",
            "Graph API version",
            type=FieldType.CHOICE,
            choices=API_VERSIONS,
            default="v26.0",
            help_text="Keep the current version unless Meta support asks otherwise; v25.0 stays valid until July 2028.",
        ),
        SettingField(
            "ad_account_id",
            "Ad account ID",
            max_length=30,
            pattern=r"(act_)?\d{1,20}",
            pattern_message="Enter the ad account number, digits only, optionally prefixed with act_.",
            help_text="Business settings > Accounts > Ad accounts, or the act= number in the Ads Manager address.",
        ),
        SettingField(
            "access_token",
            "Access token",
            secret=True,
            max_length=1000,
            pattern=r"\S{20,}",
            pattern_message="Paste the whole access token, without spaces or line breaks.",
            help_text="Business settings > Users > System users > Generate new token, with ads_management.",
        ),
        SettingField(
            "app_secret",
            "App secret",
            secret=True,
            required=False,
            max_length=64,
            pattern=r"[0-9a-fA-F]{32}",
            pattern_message="The app secret is 32 hexadecimal characters. " + NO_SPACES_MESSAGE,
            help_text=(
                "Optional. App dashboard > App settings > Basic. When set, every call is signed with "
                "appsecret_proof (required if the app enforces it)."
            ),
        ),
    ),
)
