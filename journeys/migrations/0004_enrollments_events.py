"""Activation steps lose their old text version; enrollments and events."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("journeys", "0003_link_versions")]

    operations = [
        migrations.RemoveField(model_name="journeyactivationstep", name="version_old"),
        migrations.AddField(
            model_name="journeyactivationstep", name="action", field=models.CharField(default="add", max_length=8)
        ),
        migrations.AddField(
            model_name="journeyactivationstep",
            name="partner_audience_id",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="journeyactivationstep",
            name="profile_variables",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddConstraint(
            model_name="journeyactivationstep",
            constraint=models.UniqueConstraint(
                condition=models.Q(("version__isnull", False)),
                fields=("version", "step_key"),
                name="journeystep_unique_version",
            ),
        ),
        migrations.AddConstraint(
            model_name="journeyactivationstep",
            constraint=models.UniqueConstraint(
                condition=models.Q(("version__isnull", True)),
                fields=("journey", "step_key"),
                name="journeystep_unique_draft",
            ),
        ),
        # Enrollments.
        migrations.CreateModel(
            name="JourneyEnrollment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("step_key", models.CharField(max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("active", "Active"),
                            ("waiting", "Waiting"),
                            ("completed", "Completed"),
                            ("exited", "Exited"),
                        ],
                        default="active",
                        max_length=12,
                    ),
                ),
                ("wake_at", models.DateTimeField(blank=True, null=True)),
                ("entered_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "journey",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="enrollments",
                        to="journeys.journey",
                    ),
                ),
                (
                    "profile",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="journey_enrollments",
                        to="audiences.profile",
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="enrollments",
                        to="journeys.journeyversion",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["version", "step_key", "status", "wake_at"], name="journeyenrollment_step"),
                    models.Index(fields=["profile", "journey", "finished_at"], name="journeyenrollment_profile"),
                    models.Index(fields=["journey", "status"], name="journeyenrollment_journey"),
                    models.Index(
                        condition=models.Q(("status__in", ["active", "waiting"])),
                        fields=["version"],
                        name="journeyenrollment_running",
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status__in", ["active", "waiting"])),
                        fields=("journey", "profile"),
                        name="journeyenrollment_one_running",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["active", "waiting", "completed", "exited"])),
                        name="journeyenrollment_status_valid",
                    ),
                ],
            },
        ),
        # Events.
        migrations.CreateModel(
            name="JourneyEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("properties", models.JSONField(blank=True, default=dict)),
                ("received_at", models.DateTimeField()),
                ("processed", models.BooleanField(default=False)),
                (
                    "profile",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="journey_events",
                        to="audiences.profile",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("processed", False)), fields=["id"], name="journeyevent_unprocessed"
                    ),
                    models.Index(fields=["received_at"], name="journeyevent_received"),
                ],
            },
        ),
    ]
