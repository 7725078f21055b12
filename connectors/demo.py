"""Demo data for the run command: an admin, a few connectors (DV360 with two configurations, one deactivated,
one used by an audience and a journey). Idempotent: what exists is left alone.

Credentials here are obviously fake; base URLs point at the local partner sandbox (`manage.py partner_sandbox`,
started by bin/run), so the demo's deliveries really travel over HTTP and fill the statistics.
"""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, AudienceMembership, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import outbox
from connectors.models import Connector
from journeys.models import Journey, JourneyActivationStep

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
SANDBOX_URL = os.environ.get("DAP_SANDBOX_URL", "http://127.0.0.1:8765").rstrip("/")

_OAUTH = {
    "client_id": "1234567890-demo.apps.googleusercontent.com",
    "client_secret": "GOCSPX-demo-client-secret-0000",
    "refresh_token": "1//demo-refresh-token-not-real-0000",
}

DEMO_CONNECTORS = [
    {
        "partner_key": "google_dv360",
        "name": "DV360 – Brands",
        "configs": [
            ("Brand EU", {"advertiser_id": "1000001", **_OAUTH}),
            ("Brand US", {"advertiser_id": "1000002", **_OAUTH}),
        ],
    },
    {
        "partner_key": "meta_custom_audiences",
        "name": "Meta Custom Audiences",
        "configs": [
            ("Default", {"ad_account_id": "act_1000000001", "access_token": "EAAB-demo-token-not-real-000000"})
        ],
    },
    {
        "partner_key": "webhook",
        "name": "CRM webhook",
        "configs": [
            (
                "Default",
                {
                    "endpoint_url": f"{SANDBOX_URL}/webhook/crm",
                    "signing_secret": "whsec_ZGVtby1zaWduaW5nLXNlY3JldC1ub3QtcmVhbC0wMA==",
                    "identifier_slot": "customer_id",
                },
            )
        ],
    },
    {
        "partner_key": "xandr",
        "name": "Xandr (paused)",
        "deactivated": True,
        "configs": [
            (
                "Default",
                {
                    "username": "demo_api_user",
                    "password": "demo-password-not-real",
                    "member_id": 1000,
                    "default_segment_id": 100001,
                },
            )
        ],
    },
]


@transaction.atomic
def load_demo() -> list[str]:
    """Create what is missing; return a line per thing created."""
    created: list[str] = []
    User = get_user_model()
    admin = User.objects.filter(username=ADMIN_USERNAME).first()
    if admin is None:
        admin = User.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
        admin.groups.add(Group.objects.get(name="Marketing admin"))
        created.append(f"user {ADMIN_USERNAME}")

    for spec in DEMO_CONNECTORS:
        if Connector.objects.filter(name=spec["name"]).exists():
            continue
        (first_name, first_settings), *more = spec["configs"]
        connector = services.connector_create(
            partner_key=spec["partner_key"],
            name=spec["name"],
            config_name=first_name,
            settings=first_settings,
            base_url_override=f"{SANDBOX_URL}/c/demo-{spec['partner_key']}",
            actor=admin,
        )
        for name, settings in more:
            services.partner_config_create(
                connector=connector,
                name=name,
                settings=settings,
                base_url_override=f"{SANDBOX_URL}/c/demo-{spec['partner_key']}",
                actor=admin,
            )
        if spec.get("deactivated"):
            services.connector_deactivate(connector=connector, actor=admin)
        created.append(f"connector {spec['name']}")

    profiles = _demo_profiles(created)
    meta_config = Connector.objects.get(name="Meta Custom Audiences").configs.first()
    audience, new = Audience.objects.get_or_create(
        name="Newsletter subscribers", defaults={"description": "Profiles subscribed to the newsletter (demo)."}
    )
    if new:
        AudienceConnection.objects.create(audience=audience, partner_config=meta_config, partner_audience_id="23850001")
        _enter(audience, profiles[:150])
        created.append(f"audience {audience.name} connected to Meta, 150 members queued for delivery")
    webhook_config = Connector.objects.get(name="CRM webhook").configs.first()
    loyal, new = Audience.objects.get_or_create(
        name="Loyal customers", defaults={"description": "Three or more orders (demo)."}
    )
    if new:
        AudienceConnection.objects.create(audience=loyal, partner_config=webhook_config, partner_audience_id="loyal")
        _enter(loyal, profiles[100:160])
        created.append(f"audience {loyal.name} connected to the CRM webhook, 60 members queued for delivery")

    now = timezone.now()
    journey, new = Journey.objects.get_or_create(
        name="Welcome journey", defaults={"status": Journey.Status.LIVE, "published_at": now, "draft_updated_at": now}
    )
    if new:
        JourneyActivationStep.objects.create(
            journey=journey,
            version="published",
            step_key="notify-crm",
            label="Notify CRM",
            partner_config=webhook_config,
        )
        created.append(f"journey {journey.name} sending to the CRM webhook")
    return created


def _demo_profiles(created: list[str]) -> list[Profile]:
    """200 demo profiles with an email and a customer id (a few without consent, a few without email)."""
    existing = list(Profile.objects.filter(external_id__startswith="demo-").order_by("id"))
    if existing:
        return existing
    profiles = Profile.objects.bulk_create(
        [
            Profile(external_id=f"demo-{i:04d}", consent_ads=i % 25 != 0, attributes={"orders": i % 7})
            for i in range(200)
        ]
    )
    identifiers = [ProfileIdentifier(profile=p, slot="customer_id", value=p.external_id) for p in profiles]
    identifiers += [
        ProfileIdentifier(profile=p, slot="email", value=f"{p.external_id}@example.com")
        for i, p in enumerate(profiles)
        if i % 20 != 0
    ]
    ProfileIdentifier.objects.bulk_create(identifiers)
    created.append("200 demo profiles")
    return profiles


def _enter(audience: Audience, profiles: list[Profile]) -> None:
    AudienceMembership.objects.bulk_create([AudienceMembership(audience=audience, profile=p) for p in profiles])
    outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=[p.pk for p in profiles], action="add")
