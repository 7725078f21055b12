"""The groups "Marketing admin" (manage) and "Viewer" (read-only), used by migrations whenever models are added."""

APPS = ("connectors", "audiences", "journeys", "monitoring")
# Written only by the platform itself: admins read them (deliveries are replayed through a service, not edited).
READ_ONLY_MODELS = {
    "connectorevent",
    "dailystat",
    "dailytotal",
    "deliveryattempt",
    "audiencemembership",
    "audiencemembershipchange",
    "audienceentry",
    "alert",
    "workerheartbeat",
}
# Extra permissions admins hold on read-only models.
EXTRA_ADMIN_CODENAMES = {"change_delivery"}


def sync_groups(apps, schema_editor=None) -> None:
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        before = getattr(app_config, "models_module", None)
        app_config.models_module = True  # migration state apps have none; create_permissions skips those
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = before

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = list(Permission.objects.filter(content_type__app_label__in=APPS).select_related("content_type"))
    admin_perms = [
        p
        for p in perms
        if p.codename.startswith("view_")
        or p.content_type.model not in READ_ONLY_MODELS
        or p.codename in EXTRA_ADMIN_CODENAMES
    ]
    viewer_perms = [p for p in perms if p.codename.startswith("view_")]
    Group.objects.get_or_create(name="Marketing admin")[0].permissions.set(admin_perms)
    Group.objects.get_or_create(name="Viewer")[0].permissions.set(viewer_perms)
