from django.db import migrations, models
from django.db.models import F, Max


# The texts written before they were per language. The Chinese column (the default
# language) gets every text; the English one only texts without Chinese characters, so an
# English page falls back to the Chinese text until staff write the English one, and the
# admin shows which are missing. Set-based, in id ranges (coupons can be many).
CHINESE = "[\u3400-\u9fff]"
CHUNK = 20_000


def copy_into_languages(apps, app_label, model_name, fields):
    model = apps.get_model(app_label, model_name)
    last = model.objects.aggregate(last=Max("id"))["last"] or 0
    for first in range(0, last + 1, CHUNK):
        rows = model.objects.filter(id__gte=first, id__lt=first + CHUNK)
        rows.update(**{f"{field}_zh_hans": F(field) for field in fields})
        for field in fields:
            rows.exclude(**{f"{field}__regex": CHINESE}).update(**{f"{field}_en": F(field)})


def forwards(apps, schema_editor):
    copy_into_languages(apps, "rewards", "Reward", ["name", "description"])
    copy_into_languages(apps, "rewards", "Coupon", ["title", "description"])


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0005_center_reward_category"),
    ]

    operations = [
        migrations.AddField(
            model_name="coupon",
            name="description_en",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="coupon",
            name="description_zh_hans",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="coupon",
            name="title_en",
            field=models.CharField(max_length=100, null=True, verbose_name="title"),
        ),
        migrations.AddField(
            model_name="coupon",
            name="title_zh_hans",
            field=models.CharField(max_length=100, null=True, verbose_name="title"),
        ),
        migrations.AddField(
            model_name="reward",
            name="description_en",
            field=models.TextField(
                blank=True, help_text="Details and how to use it.", null=True, verbose_name="description"
            ),
        ),
        migrations.AddField(
            model_name="reward",
            name="description_zh_hans",
            field=models.TextField(
                blank=True, help_text="Details and how to use it.", null=True, verbose_name="description"
            ),
        ),
        migrations.AddField(
            model_name="reward",
            name="name_en",
            field=models.CharField(
                help_text="What members see in the mall and on the coupon.",
                max_length=100,
                null=True,
                verbose_name="name",
            ),
        ),
        migrations.AddField(
            model_name="reward",
            name="name_zh_hans",
            field=models.CharField(
                help_text="What members see in the mall and on the coupon.",
                max_length=100,
                null=True,
                verbose_name="name",
            ),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
