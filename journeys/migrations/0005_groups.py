"""Give the groups the permissions of the journey models."""

from django.db import migrations

from connectors.group_permissions import sync_groups


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0004_enrollments_events"),
        ("connectors", "0005_groups_delivery"),
    ]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
