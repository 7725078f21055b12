"""Cookie sync: a partner's pixel redirects the visitor's browser to `/sync/<partner key>/?p=<token>&<param>=<id>`,
and the partner's user id is stored in the profile's identifier slot, where server-to-server connectors (Xandr…)
read it.

The profile is named by a signed, expiring token (`sync_token`), minted for the site by the API: a browser can
never write an id onto a profile it was not given a token for. Anything invalid — unknown partner, no active
connector of it, unknown or missing parameters, a bad or expired token, an id that does not match the partner's
format or is its "no id" value — is refused and nothing is written. Tag-based entries are not stored connectors
(their snippet is the whole setup), so the endpoint serves every catalogue partner that declares a sync.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import transaction

from audiences.models import Profile, ProfileIdentifier
from audiences.profiles import normalize_identifier
from connectors.partners.base import Partner
from connectors.partners.registry import REGISTRY

SALT = "dap.cookie-sync"
TOKEN_PARAM = "p"
# The smallest transparent GIF: what an image pixel expects back.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class SyncRefused(Exception):
    """The request is not a valid cookie sync; `status` is the HTTP answer (400, or 404 for an unknown partner or
    profile)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SyncResult:
    profile_id: int
    slot: str
    stored: bool  # False when the profile has no advertising consent (the answer is the same)


def sync_partners() -> list[Partner]:
    """Catalogue partners that run a cookie-sync endpoint."""
    return [p for p in REGISTRY.values() if p.sync_param]


def sync_token(*, profile: Profile) -> str:
    """A signed reference to `profile` for sync pixels (valid DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS)."""
    return signing.dumps(profile.pk, salt=SALT, compress=True)


def _profile_id(token: str) -> int:
    try:
        value = signing.loads(token, salt=SALT, max_age=settings.DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise SyncRefused("The sync token has expired.") from None
    except signing.BadSignature:
        raise SyncRefused("The sync token is not valid.") from None
    if not isinstance(value, int):
        raise SyncRefused("The sync token is not valid.")
    return value


def cookie_sync_record(*, partner_key: str, params: dict[str, list[str]]) -> SyncResult:
    """Validate a sync request and store the partner's id in the profile's slot (one value per slot: a new id
    replaces the old one; an id seen on another profile moves to this one). Raises SyncRefused."""
    partner = REGISTRY.get(partner_key)
    if partner is None or not partner.sync_param:
        raise SyncRefused("No cookie sync for this partner.", status=404)
    allowed = {TOKEN_PARAM, partner.sync_param}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise SyncRefused(f"Unknown parameter(s): {', '.join(unknown)}.")
    for name in sorted(allowed):
        values = params.get(name) or []
        if len(values) != 1 or not values[0]:
            raise SyncRefused(f"Parameter {name!r} is required once.")
    partner_id = params[partner.sync_param][0]
    slot = partner.identifier_slots[0]
    if not re.fullmatch(partner.sync_id_pattern, partner_id) or partner_id in partner.sync_id_refused:
        raise SyncRefused(f"{partner.sync_param!r} is not a {partner.name} user id.")
    try:
        # The slot's own rules too, as for the profile API (a Xandr uid is 1 to 2^64-1: "00" or 20 nines are not).
        partner_id = normalize_identifier(slot, partner_id)
    except ValueError:
        raise SyncRefused(f"{partner.sync_param!r} is not a {partner.name} user id.") from None
    profile_id = _profile_id(params[TOKEN_PARAM][0])
    with transaction.atomic():
        profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
        if profile is None:
            raise SyncRefused("The profile of this sync token no longer exists.", status=404)
        if not profile.consent_ads:
            return SyncResult(profile_id, slot, stored=False)
        ProfileIdentifier.objects.filter(slot=slot, value=partner_id).exclude(profile_id=profile_id).delete()
        ProfileIdentifier.objects.filter(profile_id=profile_id, slot=slot).exclude(value=partner_id).delete()
        ProfileIdentifier.objects.get_or_create(profile_id=profile_id, slot=slot, value=partner_id)
    return SyncResult(profile_id, slot, stored=True)
