"""Demo data for the run command: an admin, one connector per server-to-server partner (DV360 with two
configurations), a deactivated one, 2,000 profiles with every kind of identifier, one audience per partner whose
members are queued for delivery, and a journey. Idempotent: what exists is left alone.

Credentials here are obviously fake; base URLs point at the local partner sandbox (`manage.py partner_sandbox`,
started by bin/run), which accepts them (its conventions are in each partner's `sandbox.py`), so the demo's
deliveries really travel over HTTP, in each partner's own protocol, and fill the statistics.
"""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from audiences.models import Audience, AudienceConnection, AudienceMembership, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import outbox
from connectors.models import Connector
from connectors.partners.azure_event_hubs.sandbox import SANDBOX_SAS_KEY
from connectors.partners.azure_sas import make_account_sas
from connectors.partners.azure_storage_queue.sandbox import SANDBOX_ACCOUNT_KEY
from journeys import services as journey_services
from journeys.models import Journey

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
WELCOME_JOURNEY = "Welcome journey"
PROFILES = 2000


def sandbox_url() -> str:
    return os.environ.get("DAP_SANDBOX_URL", "http://127.0.0.1:8765").rstrip("/")


def _oauth(name: str) -> dict:
    return {
        "client_id": f"1234567890-{name}.apps.googleusercontent.com",
        "client_secret": f"GOCSPX-demo-{name}-secret-0000",
        "refresh_token": f"1//demo-{name}-refresh-token-not-real",
    }


def demo_connectors() -> list[dict]:
    """Per connector: partner, name, configurations (name, settings), and the demo audience sent to the first
    configuration (name, partner-side id, which demo profiles are members)."""
    return [
        {
            "partner_key": "google_dv360",
            "name": "DV360 – Brands",
            "configs": [
                ("Brand EU", {"advertiser_id": "1000001", **_oauth("dv360")}),
                ("Brand US", {"advertiser_id": "1000002", **_oauth("dv360")}),
            ],
            "audience": ("DV360 prospects", "4567890123", slice(0, 200)),
        },
        {
            "partner_key": "meta_custom_audiences",
            "name": "Meta Custom Audiences",
            "configs": [
                ("Default", {"ad_account_id": "act_1000000001", "access_token": "EAAB-demo-token-not-real-000000"})
            ],
            "audience": ("Newsletter subscribers", "23850001", slice(0, 150)),
        },
        {
            "partner_key": "webhook",
            "name": "CRM webhook",
            "configs": [
                (
                    "Default",
                    {
                        "endpoint_url": f"{sandbox_url()}/webhook/crm",
                        "signing_secret": "whsec_ZGVtby1zaWduaW5nLXNlY3JldC1ub3QtcmVhbC0wMA==",
                        "identifier_slot": "customer_id",
                    },
                )
            ],
            "audience": ("Loyal customers", "loyal", slice(100, 160)),
        },
        {
            "partner_key": "google_ads_customer_match",
            "name": "Google Ads – Customer Match",
            "configs": [
                (
                    "Default",
                    {
                        "operating_account_id": "123-456-7890",
                        "user_list_id": "5551234567",
                        "terms_of_service_accepted": True,
                        **_oauth("gads"),
                    },
                )
            ],
            "audience": ("Google Ads high value", "5551234567", slice(0, 200)),
        },
        {
            "partner_key": "google_cm360",
            "name": "Campaign Manager 360 – offline sales",
            "configs": [
                (
                    "Default",
                    {
                        "profile_id": "7654321",
                        "floodlight_configuration_id": "1234567",
                        "floodlight_activity_id": "9876543",
                        "default_value": "12.50",
                        "default_quantity": 1,
                        **_oauth("cm360"),
                    },
                )
            ],
            "audience": ("Offline buyers", "", slice(0, 100)),
        },
        {
            "partner_key": "xandr",
            "name": "Xandr segments",
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
            "audience": ("Retargeting", "100001", slice(0, 200)),
        },
        {
            "partner_key": "the_trade_desk",
            "name": "The Trade Desk CRM",
            "configs": [
                (
                    "Default",
                    {
                        "advertiser_id": "a1b2c3d",
                        "crm_data_id": "cc9b84o",
                        "api_token": "ttd-demo-auth-token-not-real-0000",
                    },
                )
            ],
            # The Trade Desk refuses CRM uploads under 1,500 people.
            "audience": ("Lookalike seed", "cc9b84o", slice(0, 1800)),
        },
        {
            "partner_key": "azure_event_hubs",
            "name": "Azure Event Hubs – profile stream",
            "configs": [
                (
                    "Default",
                    {
                        "namespace": "dap-events",
                        "event_hub": "profile-changes",
                        "sas_key_name": "dap-send",
                        "sas_key": SANDBOX_SAS_KEY,
                        "tier": "standard",
                        "identifier_slot": "partner_number",
                    },
                )
            ],
            "audience": ("Event stream", "all-changes", slice(0, 100)),
        },
        {
            "partner_key": "azure_storage_queue",
            "name": "Azure Storage Queue – partner feed",
            "configs": [
                (
                    "Default",
                    {
                        "account_name": "dapdemo01",
                        "queue_name": "profile-changes",
                        "sas_token": make_account_sas(
                            "dapdemo01",
                            SANDBOX_ACCOUNT_KEY,
                            permissions="ra",
                            resource_types="co",
                            expiry="2099-12-31T00:00:00Z",
                            protocol="https",
                        ),
                        "identifier_slot": "partner_number",
                    },
                )
            ],
            "audience": ("Partner feed", "", slice(0, 100)),
        },
        {
            "partner_key": "clang_realtime",
            "name": "Clang – welcome mails",
            "configs": [
                (
                    "Default",
                    {
                        "uuid": "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c",
                        "group_id": 4242,
                        "identifier_slot": "customer_id",
                    },
                )
            ],
            "audience": ("Welcome mail", "", slice(0, 50)),
        },
        {
            "partner_key": "clang_batch",
            "name": "Clang – weekly digest",
            "configs": [
                (
                    "Default",
                    {
                        "uuid": "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c",
                        "group_id": 4343,
                        "identifier_slot": "customer_id",
                    },
                )
            ],
            # Clang batch sends at 500 collected changes or every 20 minutes: 600 go out at once.
            "audience": ("Weekly digest", "", slice(0, 600)),
        },
        {
            "partner_key": "webhook",
            "name": "Legacy webhook (paused)",
            "deactivated": True,
            "configs": [
                (
                    "Default",
                    {
                        "endpoint_url": f"{sandbox_url()}/webhook/legacy",
                        "signing_secret": "whsec_bGVnYWN5LXNpZ25pbmctc2VjcmV0LW5vdC1yZWFsLTA=",
                        "identifier_slot": "customer_id",
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

    specs = demo_connectors()
    for spec in specs:
        if Connector.objects.filter(name=spec["name"]).exists():
            continue
        (first_name, first_settings), *more = spec["configs"]
        base_url = f"{sandbox_url()}/c/demo-{spec['partner_key']}"
        connector = services.connector_create(
            partner_key=spec["partner_key"],
            name=spec["name"],
            config_name=first_name,
            settings=first_settings,
            base_url_override=base_url,
            actor=admin,
        )
        for name, settings in more:
            services.partner_config_create(
                connector=connector, name=name, settings=settings, base_url_override=base_url, actor=admin
            )
        if spec.get("deactivated"):
            services.connector_deactivate(connector=connector, actor=admin)
        created.append(f"connector {spec['name']}")

    profiles = _demo_profiles(created)
    to_enter = []
    for spec in specs:
        if "audience" not in spec:
            continue
        name, partner_audience_id, members = spec["audience"]
        audience, new = Audience.objects.get_or_create(
            name=name, defaults={"description": f"Demo audience sent to {spec['name']}."}
        )
        if not new:
            continue
        config = Connector.objects.get(name=spec["name"]).configs.order_by("id").first()
        AudienceConnection.objects.create(
            audience=audience, partner_config=config, partner_audience_id=partner_audience_id
        )
        to_enter.append((audience, profiles[members], spec["name"]))

    # The journey goes live before the audiences fill: the loyal customers entering next are its first entrants.
    if not Journey.objects.filter(name=WELCOME_JOURNEY).exists():
        _welcome_journey(admin)
        created.append(f"journey {WELCOME_JOURNEY} (live) sending to the CRM webhook")

    for audience, members, connector_name in to_enter:
        _enter(audience, members)
        created.append(f"audience {audience.name} connected to {connector_name}, {len(members)} members queued")
    if _active_audience(admin):
        created.append(f"rule-based audience {ACTIVE_AUDIENCE}, refreshed by the demo activity every minute")
    if not Journey.objects.filter(name=VISIT_JOURNEY).exists():
        _visit_journey(admin)
        created.append(f"journey {VISIT_JOURNEY} (live) entering on the event {VISIT_EVENT!r}, sending to Meta")
    if _activity_schedule():
        created.append("schedule: demo activity every minute")
    return created


VISIT_JOURNEY = "Site visit follow-up"
VISIT_EVENT = "site_visit"
VISIT_EVENTS_PER_RUN = 5


def _visit_journey(admin) -> Journey:
    """A profile posting a site visit → added to a Meta retargeting audience → exit (fed by the demo activity)."""
    meta_config = Connector.objects.get(name="Meta Custom Audiences").configs.order_by("id").first()
    journey = journey_services.journey_create(
        name=VISIT_JOURNEY,
        description="Retargets visitors on Meta right after their visit (the demo activity posts the visits).",
        definition={
            "steps": [
                {"key": "visit", "type": "entry", "label": "Visits the site", "event": VISIT_EVENT, "next": "meta"},
                {
                    "key": "meta",
                    "type": "activate",
                    "label": "Retarget on Meta",
                    "partner_config_id": meta_config.pk,
                    "partner_audience_id": "23850003",
                    "action": "add",
                    "next": "done",
                },
                {"key": "done", "type": "exit", "label": "Done"},
            ]
        },  # fmt: skip
        actor=admin,
    )
    journey_services.journey_publish(journey=journey, actor=admin)
    return journey


# --- live activity: the demo keeps feeding its connectors --------------------------------------------------------
ACTIVE_AUDIENCE = "Active this week"
ACTIVE_RULE = {"all": [{"attribute": "active_this_week", "op": "equals", "value": True}]}
# The rule-based audience is sent to these demo connectors (partner-side ids valid in the sandbox).
ACTIVE_CONNECTIONS = (
    ("Meta Custom Audiences", "23850002"),
    ("CRM webhook", "active"),
    ("Xandr segments", "100002"),
    ("Azure Event Hubs – profile stream", "active-this-week"),
    ("Clang – welcome mails", ""),
)
ACTIVITY_SCHEDULE = "dap: demo activity"


def _active_audience(admin) -> bool:
    from audiences import services as audience_services

    if Audience.objects.filter(name=ACTIVE_AUDIENCE).exists():
        return False
    audience = audience_services.audience_create(
        name=ACTIVE_AUDIENCE,
        description="Profiles seen this week (demo: the activity schedule changes who that is every minute).",
        rule=ACTIVE_RULE,
        actor=admin,
    )
    for connector_name, partner_audience_id in ACTIVE_CONNECTIONS:
        config = Connector.objects.get(name=connector_name).configs.order_by("id").first()
        audience_services.audience_connection_create(
            audience=audience, partner_config=config, partner_audience_id=partner_audience_id, actor=admin
        )
    audience_services.audience_refresh(audience=audience)
    return True


def _activity_schedule() -> bool:
    from django_q.models import Schedule

    _, new = Schedule.objects.get_or_create(
        name=ACTIVITY_SCHEDULE,
        defaults={"func": "connectors.tasks.demo_activity", "schedule_type": Schedule.MINUTES, "minutes": 1},
    )
    return new


def demo_activity(*, changes: int = 20) -> dict:
    """Simulated visitors: `changes` random demo profiles become active or inactive this week (one UPDATE), then
    the rule-based demo audience is refreshed, so its enters and exits go to its connectors as adds and removes."""
    from audiences import services as audience_services

    audience = Audience.objects.filter(name=ACTIVE_AUDIENCE).first()
    if audience is None:
        return {"changed": 0}
    ids = list(
        Profile.objects.filter(external_id__startswith="demo-").order_by("?").values_list("id", flat=True)[:changes]
    )
    profiles = Profile.objects.filter(pk__in=ids)
    for profile in profiles:  # at most `changes` rows: the demo's own small write
        profile.attributes = {**profile.attributes, "active_this_week": not profile.attributes.get("active_this_week")}
    Profile.objects.bulk_update(profiles, ["attributes"])
    result = audience_services.audience_refresh(audience=audience)
    # A few of them visit the site: the event enters them in the live follow-up journey.
    for profile_id in ids[:VISIT_EVENTS_PER_RUN]:
        journey_services.journey_event_record(event=VISIT_EVENT, profile_id=profile_id, properties={"source": "demo"})
    return {
        "changed": len(ids),
        "enters": result.enters,
        "exits": result.exits,
        "visits": min(len(ids), VISIT_EVENTS_PER_RUN),
    }


def _welcome_journey(admin) -> Journey:
    """Loyal customers entering → wait a minute → sent to the CRM webhook → exit."""
    webhook_config = Connector.objects.get(name="CRM webhook").configs.order_by("id").first()
    loyal = Audience.objects.get(name="Loyal customers")
    journey = journey_services.journey_create(
        name=WELCOME_JOURNEY,
        description="Welcomes every new loyal customer in the CRM a minute after they qualify.",
        definition={
            "steps": [
                {
                    "key": "start",
                    "type": "entry",
                    "label": "Becomes a loyal customer",
                    "audience_id": loyal.pk,
                    "next": "wait",
                },
                {
                    "key": "wait",
                    "type": "wait",
                    "label": "Wait a minute",
                    "duration": {"minutes": 1},
                    "next": "notify-crm",
                },
                {
                    "key": "notify-crm",
                    "type": "activate",
                    "label": "Notify CRM",
                    "partner_config_id": webhook_config.pk,
                    "action": "add",
                    "next": "done",
                },
                {"key": "done", "type": "exit", "label": "Done"},
            ]
        },  # fmt: skip
        actor=admin,
    )
    journey_services.journey_publish(journey=journey, actor=admin)
    return journey


def _demo_profiles(created: list[str]) -> list[Profile]:
    """2,000 demo profiles, every one with a customer id and a partner number; most with an email; some with a
    phone (E.164), a mobile advertising id, a Xandr user id (as cookie sync fills it) or a gclid; a few without
    advertising consent."""
    existing = list(Profile.objects.filter(external_id__startswith="demo-").order_by("id"))
    if existing:
        return existing
    profiles = Profile.objects.bulk_create(
        [
            Profile(
                external_id=f"demo-{i:04d}",
                consent_ads=i % 25 != 0,
                attributes={"orders": i % 7, "active_this_week": i % 10 == 0},
            )
            for i in range(PROFILES)
        ]
    )
    identifiers = []
    for i, p in enumerate(profiles):
        identifiers.append(ProfileIdentifier(profile=p, slot="customer_id", value=p.external_id))
        identifiers.append(ProfileIdentifier(profile=p, slot="partner_number", value=f"PN{i:06d}"))
        if i % 20 != 0:
            identifiers.append(ProfileIdentifier(profile=p, slot="email", value=f"{p.external_id}@example.com"))
        if i % 3 == 0:
            identifiers.append(ProfileIdentifier(profile=p, slot="phone", value=f"+316{i:08d}"))
        if i % 4 == 2:  # never on a profile without email: DV360's demo audience takes contact info only
            identifiers.append(
                ProfileIdentifier(profile=p, slot="mobile_ad_id", value=f"6D92078A-8246-4BA4-AE5B-{i:012X}")
            )
        if i % 2 == 0:
            identifiers.append(ProfileIdentifier(profile=p, slot="xandr_uid", value=str(5727816213491965430 + i)))
        if i % 5 == 0:
            identifiers.append(ProfileIdentifier(profile=p, slot="gclid", value=f"Cj0KCQjwDemoClick{i:06d}"))
    ProfileIdentifier.objects.bulk_create(identifiers)
    created.append(f"{PROFILES} demo profiles")
    return profiles


def _enter(audience: Audience, profiles: list[Profile]) -> None:
    AudienceMembership.objects.bulk_create([AudienceMembership(audience=audience, profile=p) for p in profiles])
    outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=[p.pk for p in profiles], action="add")
