"""Google tag (gtag.js) with an optional Floodlight conversion event (tag-based)."""

from connectors.partners.base import (
    Kind,
    Mode,
    Partner,
    PlatformType,
    SettingField,
)

TAG_ID_PATTERN = r"G-[A-Z0-9]{4,20}|AW-\d{4,20}|DC-\d{4,20}|GT-[A-Z0-9]{4,20}"
# DC-<advertiser>/<activity group tag>/<activity tag>+<counting method>
SEND_TO_PATTERN = r"DC-\d{4,20}/[A-Za-z0-9_-]{1,32}/[A-Za-z0-9_-]{1,32}\+(standard|unique|per_session)"

# Google's gtag.js loader and config, then the Floodlight event when a send_to is set (empty string: no event).
# Rendered with str.format: JS braces are doubled.
SNIPPET = """<!-- Google tag (gtag.js) -->
<script async src="https://www.googletagmanager.com/gtag/js?id={tag_id}"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());

  gtag('config', '{tag_id}');

  var floodlightSendTo = '{floodlight_send_to}';
  if (floodlightSendTo) {{
    gtag('event', 'conversion', {{'allow_custom_scripts': true, 'send_to': floodlightSendTo}});
  }}
</script>
<!-- End Google tag -->
"""


def floodlight_matches_tag(settings) -> dict[str, str]:
    """A Floodlight event only fires for the DC- account configured by this tag."""
    send_to, tag_id = settings.get("floodlight_send_to"), settings.get("tag_id")
    if send_to and tag_id and send_to.split("/", 1)[0] != tag_id:
        return {"floodlight_send_to": f"The Floodlight send_to must start with the tag ID {tag_id}/."}
    return {}


PARTNER = Partner(
    key="google_tag",
    name="Google tag / Floodlight",
    vendor="Google",
    description=(
        "The Google tag (gtag.js) for Google Analytics, Google Ads or Campaign Manager 360 Floodlight, with an "
        "optional Floodlight conversion event. Copy the snippet into your pages."
    ),
    platform_type=PlatformType.ANALYTICS,
    kind=Kind.TAG_BASED,
    protocol="Browser JavaScript tag (gtag.js)",
    mode=Mode.REAL_TIME,
    identifier_slots=(),
    syncs_on=(),
    usable_in=(),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://developers.google.com/tag-platform/gtagjs/install",
    prerequisites=(
        "A Google Analytics property, Google Ads account or Campaign Manager 360 Floodlight configuration.",
        "Access to edit your website's <head>, or a tag manager, and a consent setup (Consent Mode) where required.",
    ),
    snippet_template=SNIPPET,
    settings=(
        SettingField(
            "tag_id",
            "Tag ID",
            max_length=30,
            pattern=TAG_ID_PATTERN,
            pattern_message="Enter a Google tag ID such as G-XXXXXXXXXX, AW-123456789, DC-1234567 or GT-XXXXXXX.",
            help_text=(
                "Google Analytics: Admin > Data streams (G-…); Google Ads: Tools > Google tag (AW-…); "
                "Campaign Manager 360: Floodlight configuration > Tags (DC-…)."
            ),
        ),
        SettingField(
            "floodlight_send_to",
            "Floodlight event send_to",
            required=False,
            max_length=120,
            pattern=SEND_TO_PATTERN,
            pattern_message="Enter send_to as DC-1234567/groupTag/activityTag+standard (or +unique, +per_session).",
            help_text="Optional. From the Floodlight activity's event snippet in Campaign Manager 360 (send_to).",
        ),
    ),
    cross_checks=(floodlight_matches_tag,),
)
