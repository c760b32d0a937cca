"""Foreign keys whose index another index already begins with lose their own (one index
entry less per row written). Only the index goes: the constraint stays as it is, not
dropped and validated again over the whole table as AlterField would."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0013_merge"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="notification",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notifications",
                        to="members.member",
                        verbose_name="member",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS members_notification_member_id_9be3d096",
                    "CREATE INDEX IF NOT EXISTS members_notification_member_id_9be3d096 ON members_notification (member_id)",
                ),
            ],
        ),
    ]
