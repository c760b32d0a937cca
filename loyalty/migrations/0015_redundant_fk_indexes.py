"""Foreign keys whose index another index already begins with lose their own (one index
entry less per row written). Only the index goes: the constraint stays as it is, not
dropped and validated again over the whole table as AlterField would."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0014_merge_kind"),
        ("members", "0014_redundant_fk_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="members.member",
                        verbose_name="member",
                    ),
                ),
                migrations.AlterField(
                    model_name="order",
                    name="store",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="members.store",
                        verbose_name="store",
                    ),
                ),
                migrations.AlterField(
                    model_name="tierchange",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tier_changes",
                        to="members.member",
                        verbose_name="member",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS loyalty_order_member_id_fd32ca6a",
                    "CREATE INDEX IF NOT EXISTS loyalty_order_member_id_fd32ca6a ON loyalty_order (member_id)",
                ),
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS loyalty_order_store_id_cfb139ff",
                    "CREATE INDEX IF NOT EXISTS loyalty_order_store_id_cfb139ff ON loyalty_order (store_id)",
                ),
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS loyalty_tierchange_member_id_f4de6cd7",
                    "CREATE INDEX IF NOT EXISTS loyalty_tierchange_member_id_f4de6cd7 ON loyalty_tierchange (member_id)",
                ),
            ],
        ),
    ]
