"""Idempotency keys belong to a client (store key, staff user, member), not to a member
and endpoint; a record is written only once its request has answered."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Cast, Concat


def scope_to_clients(apps, schema_editor):
    record = apps.get_model("api", "IdempotencyRecord")
    # A claim left in flight by the old code has no answer to replay: its request either
    # rolled back or wrote under the ledger's own key, which a retry replays.
    record.objects.filter(status="in_flight").delete()
    record.objects.update(client=Concat(Value("member:"), Cast("member_id", models.CharField())))


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="idempotencyrecord", name="idempotency_key_per_member_scope"),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="client",
            field=models.CharField(default="", max_length=40, verbose_name="client"),
            preserve_default=False,
        ),
        migrations.RunPython(scope_to_clients, migrations.RunPython.noop),
        migrations.RemoveField(model_name="idempotencyrecord", name="status"),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="member",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="members.member",
                verbose_name="member",
            ),
        ),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="response_status",
            field=models.PositiveSmallIntegerField(verbose_name="response status"),
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(fields=("client", "key"), name="idempotency_key_per_client"),
        ),
    ]
