"""Memberships, their change log and static-list entries are written only by the platform (refreshes, uploads
through the audience services): the groups get read access to them, not add/change/delete."""

from django.db import migrations

from connectors.group_permissions import sync_groups


class Migration(migrations.Migration):
    dependencies = [("audiences", "0006_groups")]

    operations = [migrations.RunPython(sync_groups, migrations.RunPython.noop)]
