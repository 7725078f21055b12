"""Meta Pixel base code (tag-based): the admin copies the snippet into the site's <head>."""

from connectors.partners.base import (
    Kind,
    Mode,
    Partner,
    PlatformType,
    SettingField,
)

# Meta's base code with the pixel id as a placeholder. Rendered with str.format: JS braces are doubled.
SNIPPET = """<!-- Meta Pixel Code -->
<script>
!function(f,b,e,v,n,t,s)
{{if(f.fbq)return;n=f.fbq=function(){{n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)}};
if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;n.version='2.0';
n.queue=[];t=b.createElement(e);t.async=!0;
t.src=v;s=b.getElementsByTagName(e)[0];
s.parentNode.insertBefore(t,s)}}(window, document,'script',
'https://connect.facebook.net/en_US/fbevents.js');
fbq('init', '{pixel_id}');
fbq('track', 'PageView');
</script>
<noscript><img height="1" width="1" style="display:none"
src="https://www.facebook.com/tr?id={pixel_id}&ev=PageView&noscript=1"
/></noscript>
<!-- End Meta Pixel Code -->
"""

PARTNER = Partner(
    key="meta_pixel",
    name="Meta Pixel",
    vendor="Meta",
    description=(
        "The Meta Pixel base code for your website: it records page views and events in Meta Events Manager "
        "for measurement and retargeting. Copy the snippet into every page's <head>."
    ),
    platform_type=PlatformType.SOCIAL,
    kind=Kind.TAG_BASED,
    protocol="Browser JavaScript tag (fbevents.js) with an image fallback",
    mode=Mode.REAL_TIME,
    identifier_slots=(),
    syncs_on=(),
    usable_in=(),
    multiple_configs=False,
    profile_variables=False,
    docs_url="https://developers.facebook.com/docs/meta-pixel/get-started/",
    prerequisites=(
        "A Meta Business account with a pixel (dataset) created in Events Manager.",
        "Access to edit your website's <head>, or a tag manager, and a cookie-consent setup that loads the pixel "
        "only after consent where required.",
    ),
    snippet_template=SNIPPET,
    settings=(
        SettingField(
            "pixel_id",
            "Pixel ID",
            max_length=20,
            pattern=r"\d{10,20}",
            pattern_message="The pixel ID is a number of 10 to 20 digits (Events Manager > Data sources).",
            help_text="Events Manager > Data sources > your pixel: the ID under its name.",
        ),
    ),
)
