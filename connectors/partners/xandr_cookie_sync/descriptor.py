"""Xandr cookie sync (tag-based): an image pixel to Xandr getuid that redirects to our sync endpoint with $UID."""

from connectors.identifiers import Slot
from connectors.partners.base import (
    FieldType,
    Kind,
    Mode,
    Partner,
    PlatformType,
    SettingField,
)
from connectors.partners.validators import validate_base_url

SYNC_PATH = "/sync/xandr_cookie_sync/"

# Xandr's getuid service replaces $UID in the redirect URL with the visitor's Xandr user id and redirects there.
# DAP_SYNC_TOKEN is replaced by the site with the visitor's signed profile token (POST /api/v1/cookie-sync/tokens/).
SNIPPET = """<!-- Xandr cookie sync -->
<img src="https://ib.adnxs.com/getuid?{platform_base_url}/sync/xandr_cookie_sync/?p=DAP_SYNC_TOKEN&uid=$UID"
  width="1" height="1" alt="" style="display:none">
<!-- End Xandr cookie sync: replace DAP_SYNC_TOKEN per visitor with the token from /api/v1/cookie-sync/tokens/ -->
"""

PARTNER = Partner(
    key="xandr_cookie_sync",
    name="Xandr cookie sync",
    vendor="Microsoft",
    description=(
        "A 1x1 image tag that learns each visitor's Xandr user id and stores it on their profile, so the Xandr "
        "connector can add them to segments. Place it on pages your known visitors see."
    ),
    platform_type=PlatformType.DSP,
    kind=Kind.TAG_BASED,
    protocol="Browser image pixel (Xandr getuid redirect to the platform's sync endpoint)",
    mode=Mode.REAL_TIME,
    identifier_slots=(Slot.XANDR_UID,),
    cookie_sync=True,
    # Xandr user ids are unsigned 64-bit integers; getuid sends 0 when the browser has no id or opted out.
    sync_param="uid",
    sync_id_pattern=r"[0-9]{1,20}",
    sync_id_refused=("0", "-1"),
    syncs_on=(),
    usable_in=(),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://learn.microsoft.com/en-us/xandr/bidders/user-data---faq",
    prerequisites=(
        "The platform's public base URL reachable over https by visitors' browsers.",
        "Pages where visitors are identified (logged in or known), and consent for advertising cookies where required.",
    ),
    snippet_template=SNIPPET,
    settings=(
        SettingField(
            "platform_base_url",
            "Platform public base URL",
            type=FieldType.URL,
            https_only=True,
            max_length=300,
            help_text=f"The https address visitors reach the platform at; the sync endpoint is {SYNC_PATH} below it.",
            validators=(validate_base_url,),
        ),
    ),
)
