"""``Notification.dedupe_key``: the unique index stays as it is (now declared as a
constraint of the same name); the LIKE index Django added beside it on PostgreSQL goes."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("members", "0014_redundant_fk_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="notification",
                    name="dedupe_key",
                    field=models.CharField(max_length=200, verbose_name="deduplication key"),
                ),
                migrations.AddConstraint(
                    model_name="notification",
                    constraint=models.UniqueConstraint(
                        fields=("dedupe_key",), name="members_notification_dedupe_key_key"
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS members_notification_dedupe_key_076c651e_like",
                    migrations.RunSQL.noop,
                ),
            ],
        ),
    ]
