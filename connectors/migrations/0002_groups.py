"""Groups "Marketing admin" (manage connectors) and "Viewer" (read-only)."""

from django.db import migrations

from connectors.group_permissions import sync_groups


def create_groups(apps, schema_editor):
    sync_groups(apps, schema_editor)


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
