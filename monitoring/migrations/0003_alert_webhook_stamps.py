"""Per-channel notice stamps: the webhook's apart from the e-mail's (`notified_at`, `recovery_notified_at`)."""

from django.db import migrations, models


def stamp_existing(apps, schema_editor):
    # Alerts from before this migration had one stamp for the notice: their webhook side is as done as their e-mail.
    Alert = apps.get_model("monitoring", "Alert")
    Alert.objects.update(
        webhook_notified_at=models.F("notified_at"), webhook_recovery_notified_at=models.F("recovery_notified_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_groups_schedules"),
    ]

    operations = [
        migrations.AddField(
            model_name="alert",
            name="webhook_notified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="alert",
            name="webhook_recovery_notified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(stamp_existing, migrations.RunPython.noop),
    ]
