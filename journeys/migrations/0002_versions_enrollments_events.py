"""Published versions, enrollments, events; activation steps link to the draft (no version) or to a version.

Existing rows: a journey's "published" activation steps become the steps of its version 1 (created here with the
journey's publication time), its "draft" ones stay the draft's; their PROTECT links to configurations are kept.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0003_membership_audience_index"),
        ("connectors", "0006_outbox_autovacuum"),
        ("journeys", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Journey: description, who/when of status changes, the draft definition.
        migrations.AddField(model_name="journey", name="description", field=models.TextField(blank=True, default="")),
        migrations.AddField(
            model_name="journey", name="status_changed_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="journey",
            name="status_changed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(model_name="journey", name="definition", field=models.JSONField(blank=True, default=dict)),
        migrations.AddField(
            model_name="journey",
            name="entries_since",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="journey",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(model_name="journey", name="updated_at", field=models.DateTimeField(auto_now=True)),
        migrations.AddConstraint(
            model_name="journey",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["draft", "live", "paused", "stopped"])), name="journey_status_valid"
            ),
        ),
        # Versions.
        migrations.CreateModel(
            name="JourneyVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField()),
                ("definition", models.JSONField()),
                ("published_at", models.DateTimeField()),
                (
                    "journey",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="versions", to="journeys.journey"
                    ),
                ),
                (
                    "published_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["journey", "-number"]},
        ),
        migrations.AddConstraint(
            model_name="journeyversion",
            constraint=models.UniqueConstraint(fields=("journey", "number"), name="journeyversion_unique_number"),
        ),
        # Activation steps: "published"/"draft" text becomes a link to the version (none for the draft).
        migrations.RemoveConstraint(model_name="journeyactivationstep", name="journeystep_unique_key"),
        migrations.RenameField(model_name="journeyactivationstep", old_name="version", new_name="version_old"),
        migrations.AddField(
            model_name="journeyactivationstep",
            name="version",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="activation_steps",
                to="journeys.journeyversion",
            ),
        ),
    ]
