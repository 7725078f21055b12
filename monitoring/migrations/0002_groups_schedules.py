"""Admins and viewers may read alerts; the heartbeat and alert schedules run every minute."""

from django.db import migrations

from connectors.group_permissions import sync_groups

SCHEDULES = [
    ("dap: worker heartbeat", "monitoring.tasks.heartbeat"),
    ("dap: evaluate alerts", "monitoring.tasks.evaluate_alerts"),
]


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": 1, "repeats": -1}
        )


def remove_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
        ("connectors", "0006_outbox_autovacuum"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunPython(sync_groups, migrations.RunPython.noop),
        migrations.RunPython(create_schedules, remove_schedules),
    ]
