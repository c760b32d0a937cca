"""``Member.updated_at``: stamped by the database whenever a profile column changes.

A trigger rather than ``auto_now``: profile changes take many paths (``save(update_fields=
[...])`` in the services, the admin's full save, imports, ``QuerySet.update``), and
``auto_now`` misses all but a full save. The trigger fires only for an UPDATE naming one
of the profile columns (the ledger's counter updates on every earn do not wake it), and
stamps only when a value really changed, so an edit that changes nothing is no event.
"""

from django.db import migrations, models

# The columns whose change is a "member.updated" (webhooks/collect.py sends them).
PROFILE_COLUMNS = (
    "phone",
    "name",
    "gender",
    "birthday",
    "email",
    "home_store_id",
    "status",
    "sms_consent_at",
    "email_consent_at",
    "wechat_consent_at",
)
COLUMNS = ", ".join(PROFILE_COLUMNS)
OLD = ", ".join(f"OLD.{c}" for c in PROFILE_COLUMNS)
NEW = ", ".join(f"NEW.{c}" for c in PROFILE_COLUMNS)

POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION members_member_profile_changed() RETURNS trigger AS $$
BEGIN
    IF ROW({NEW}) IS DISTINCT FROM ROW({OLD}) THEN
        NEW.updated_at := clock_timestamp();
    ELSE
        NEW.updated_at := OLD.updated_at;  -- a stale full save never moves it back
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
POSTGRES_TRIGGER = f"""
CREATE TRIGGER members_member_profile_changed BEFORE UPDATE OF {COLUMNS} ON members_member
    FOR EACH ROW EXECUTE FUNCTION members_member_profile_changed()
"""
POSTGRES_DROP = (
    "DROP TRIGGER IF EXISTS members_member_profile_changed ON members_member",
    "DROP FUNCTION IF EXISTS members_member_profile_changed()",
)
# SQLite (the embedded default) stores datetimes as text in Django's format: six digits
# of fraction, so '%f' (seconds with three) gets three zeros.
SQLITE = f"""
CREATE TRIGGER members_member_profile_changed AFTER UPDATE OF {COLUMNS} ON members_member
FOR EACH ROW WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in PROFILE_COLUMNS)}
BEGIN
    UPDATE members_member SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now') WHERE id = NEW.id;
END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS members_member_profile_changed;"


def create_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION)
        schema_editor.execute(POSTGRES_TRIGGER)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE)


def drop_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for statement in POSTGRES_DROP:
            schema_editor.execute(statement)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0009_job_chunks_and_progress"),
    ]

    operations = [
        migrations.AddField(
            model_name="member",
            name="updated_at",
            field=models.DateTimeField(
                blank=True, db_index=True, editable=False, null=True, verbose_name="profile changed at"
            ),
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
