"""Every journey of one action becomes a journey of one step (docs/journeys.md, "Steps").

The action and its fields move from the journey to its step 1; the next migration drops
them from the journey. Backwards, step 1's action goes back onto the journey.
"""

from django.db import migrations

FIELDS = (
    "action",
    "points",
    "coupon_title",
    "coupon_kind",
    "coupon_value",
    "coupon_valid_days",
    "tag_id",
    "message_title",
    "message_body",
)


def forwards(apps, schema_editor):
    Journey = apps.get_model("engagement", "Journey")
    JourneyStep = apps.get_model("engagement", "JourneyStep")
    for journey in Journey.objects.filter(steps__isnull=True).exclude(action=""):
        JourneyStep.objects.create(
            journey=journey, position=1, kind="action", **{name: getattr(journey, name) for name in FIELDS}
        )


def backwards(apps, schema_editor):
    Journey = apps.get_model("engagement", "Journey")
    JourneyStep = apps.get_model("engagement", "JourneyStep")
    for step in JourneyStep.objects.filter(position=1, variant="", kind="action"):
        Journey.objects.filter(pk=step.journey_id).update(**{name: getattr(step, name) for name in FIELDS})


class Migration(migrations.Migration):
    dependencies = [("engagement", "0003_journeys_steps")]

    operations = [migrations.RunPython(forwards, backwards)]
