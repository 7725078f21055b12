"""Give the groups the permissions of the static-list entries and the membership change log."""

from django.db import migrations

from connectors.group_permissions import sync_groups


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0005_schedules"),
        ("connectors", "0005_groups_delivery"),
    ]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
