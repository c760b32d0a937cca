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
    copy_into_languages(apps, "loyalty", "Tier", ["name", "description"])
    copy_into_languages(apps, "loyalty", "Benefit", ["title", "description"])
    copy_into_languages(apps, "loyalty", "EarnRule", ["name"])


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0010_programme_transfer_kind_order_benefits"),
    ]

    operations = [
        migrations.AddField(
            model_name="benefit",
            name="description_en",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="benefit",
            name="description_zh_hans",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="benefit",
            name="title_en",
            field=models.CharField(max_length=100, null=True, verbose_name="title"),
        ),
        migrations.AddField(
            model_name="benefit",
            name="title_zh_hans",
            field=models.CharField(max_length=100, null=True, verbose_name="title"),
        ),
        migrations.AddField(
            model_name="earnrule",
            name="name_en",
            field=models.CharField(max_length=100, null=True, verbose_name="name"),
        ),
        migrations.AddField(
            model_name="earnrule",
            name="name_zh_hans",
            field=models.CharField(max_length=100, null=True, verbose_name="name"),
        ),
        migrations.AddField(
            model_name="tier",
            name="description_en",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="tier",
            name="description_zh_hans",
            field=models.TextField(blank=True, null=True, verbose_name="description"),
        ),
        migrations.AddField(
            model_name="tier",
            name="name_en",
            field=models.CharField(max_length=50, null=True, verbose_name="name"),
        ),
        migrations.AddField(
            model_name="tier",
            name="name_zh_hans",
            field=models.CharField(max_length=50, null=True, verbose_name="name"),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
