"""Give the groups the permissions of the delivery models."""

from django.db import migrations

from connectors.group_permissions import sync_groups


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0004_schedules"),
        ("audiences", "0002_profiles_memberships"),
    ]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
