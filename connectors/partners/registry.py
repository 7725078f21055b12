"""The catalogue: partner key -> Partner. Adding a partner is one folder plus one line here."""

from connectors.partners.azure_event_hubs.descriptor import PARTNER as AZURE_EVENT_HUBS
from connectors.partners.azure_storage_queue.descriptor import PARTNER as AZURE_STORAGE_QUEUE
from connectors.partners.base import Kind, Partner
from connectors.partners.clang_batch.descriptor import PARTNER as CLANG_BATCH
from connectors.partners.clang_realtime.descriptor import PARTNER as CLANG_REALTIME
from connectors.partners.google_ads_customer_match.descriptor import PARTNER as GOOGLE_ADS_CUSTOMER_MATCH
from connectors.partners.google_cm360.descriptor import PARTNER as GOOGLE_CM360
from connectors.partners.google_dv360.descriptor import PARTNER as GOOGLE_DV360
from connectors.partners.google_tag.descriptor import PARTNER as GOOGLE_TAG
from connectors.partners.meta_custom_audiences.descriptor import PARTNER as META_CUSTOM_AUDIENCES
from connectors.partners.meta_pixel.descriptor import PARTNER as META_PIXEL
from connectors.partners.the_trade_desk.descriptor import PARTNER as THE_TRADE_DESK
from connectors.partners.webhook.descriptor import PARTNER as WEBHOOK
from connectors.partners.xandr.descriptor import PARTNER as XANDR
from connectors.partners.xandr_cookie_sync.descriptor import PARTNER as XANDR_COOKIE_SYNC

_PARTNERS: tuple[Partner, ...] = (
    WEBHOOK,
    META_CUSTOM_AUDIENCES,
    GOOGLE_DV360,
    GOOGLE_CM360,
    GOOGLE_ADS_CUSTOMER_MATCH,
    XANDR,
    THE_TRADE_DESK,
    AZURE_EVENT_HUBS,
    AZURE_STORAGE_QUEUE,
    CLANG_REALTIME,
    CLANG_BATCH,
    META_PIXEL,
    GOOGLE_TAG,
    XANDR_COOKIE_SYNC,
)

REGISTRY: dict[str, Partner] = {p.key: p for p in _PARTNERS}
if len(REGISTRY) != len(_PARTNERS):
    raise RuntimeError("Duplicate partner keys in the catalogue")


class UnknownPartner(KeyError):
    pass


def get_partner(key: str) -> Partner:
    try:
        return REGISTRY[key]
    except KeyError:
        raise UnknownPartner(key) from None


def all_partners(kind: str | None = None) -> list[Partner]:
    partners = [p for p in _PARTNERS if kind is None or p.kind == kind]
    return sorted(partners, key=lambda p: (p.kind != Kind.SERVER_TO_SERVER, p.name.lower()))
