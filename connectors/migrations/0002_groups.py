"""Groups "Marketing admin" (manage connectors) and "Viewer" (read-only)."""

from django.db import migrations

APPS = ("connectors", "audiences", "journeys")
READ_ONLY_MODELS = {"connectorevent", "dailystat"}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; make sure ours exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label__in=APPS)
    admin_perms = [p for p in perms if p.codename.startswith("view_") or p.content_type.model not in READ_ONLY_MODELS]
    viewer_perms = [p for p in perms if p.codename.startswith("view_")]
    marketing_admin, _ = Group.objects.get_or_create(name="Marketing admin")
    marketing_admin.permissions.set(admin_perms)
    viewer, _ = Group.objects.get_or_create(name="Viewer")
    viewer.permissions.set(viewer_perms)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Marketing admin", "Viewer"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("connectors", "0001_initial"),
        ("audiences", "0001_initial"),
        ("journeys", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
