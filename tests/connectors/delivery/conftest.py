import pytest

from audiences.models import AudienceMembership, Profile, ProfileIdentifier
from connectors.delivery import dispatcher
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import CallResult, ItemResult


@pytest.fixture(autouse=True)
def no_kick(settings):
    settings.DAP_KICK_ON_COMMIT = False
    # One shard unless a test is about sharding: batches and fault counts are then easy to reason about.
    settings.DAP_DISPATCH_SHARDS = 1


class FakeClient(PartnerClient):
    """Records calls; answers with `FakeClient.script(action, items)` (default: all OK)."""

    calls: list = []
    script = None

    def send(self, action, items):
        FakeClient.calls.append((action, list(items)))
        if FakeClient.script is not None:
            return FakeClient.script(action, items)
        return [CallResult(item_indices=list(range(len(items))), results=[ItemResult.ok(action)] * len(items),
                           status_code=200)]  # fmt: skip

    def test_connection(self):
        return True, "fake ok"


@pytest.fixture
def fake_client(monkeypatch):
    FakeClient.calls = []
    FakeClient.script = None
    dispatcher._clients.clear()
    monkeypatch.setattr(dispatcher, "client_class", lambda key: FakeClient)
    yield FakeClient
    dispatcher._clients.clear()


def make_profiles(n, *, slot="customer_id", consent=True, audience=None, prefix="p"):
    profiles = Profile.objects.bulk_create([Profile(external_id=f"{prefix}{i}", consent_ads=consent) for i in range(n)])
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=f"{prefix}-id-{p.pk}") for p in profiles]
    )
    if audience is not None:
        AudienceMembership.objects.bulk_create([AudienceMembership(audience=audience, profile=p) for p in profiles])
    return profiles
