"""Existing activation steps: "published" rows become the steps of version 1, "draft" rows the draft's (a journey
without draft rows gets its published steps as its draft, links included)."""

from django.db import migrations
from django.utils import timezone


def link_versions(apps, schema_editor):
    Journey = apps.get_model("journeys", "Journey")
    JourneyVersion = apps.get_model("journeys", "JourneyVersion")
    Step = apps.get_model("journeys", "JourneyActivationStep")
    for journey in Journey.objects.filter(activation_steps__isnull=False).distinct():
        steps = list(Step.objects.filter(journey=journey).order_by("id"))

        def as_steps(rows):
            return [
                {"key": s.step_key, "type": "activate", "label": s.label, "partner_config_id": s.partner_config_id}
                for s in rows
            ]

        published = as_steps(s for s in steps if s.version_old == "published")
        draft = as_steps(s for s in steps if s.version_old != "published")
        journey.definition = {"steps": draft or published}
        journey.save(update_fields=["definition"])
        if published:
            version = JourneyVersion.objects.create(
                journey=journey,
                number=1,
                definition={"steps": published},
                published_at=journey.published_at or timezone.now(),
            )
            Step.objects.filter(journey=journey, version_old="published").update(version=version)
            if not draft:  # the draft is the published version: its activation steps are the draft's too
                Step.objects.bulk_create(
                    [
                        Step(journey=journey, version=None, version_old="draft", step_key=s.step_key, label=s.label,
                             partner_config_id=s.partner_config_id)
                        for s in steps
                    ]
                )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("journeys", "0002_versions_enrollments_events")]

    operations = [
        migrations.RunPython(link_versions, migrations.RunPython.noop),
    ]
