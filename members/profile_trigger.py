"""The SQLite form of the trigger that stamps ``Member.updated_at`` (members migration 0010).

SQLite has no ALTER TABLE for most changes: Django's migrations rebuild the table, which
drops its triggers (members 0011 did, adding ``language``). So on SQLite (the embedded
default) the trigger is put back after every ``migrate`` (``post_migrate``, members/apps.py);
``IF NOT EXISTS`` makes that a no-op when it is there. PostgreSQL keeps triggers across
ALTER TABLE and needs nothing after its migration.
"""

from django.db import connections

# The columns whose change is a "member.updated" (webhooks/collect.py sends them): the
# same list as the migration's.
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

# Django stores SQLite datetimes as text with six digits of fraction; '%f' gives three.
SQLITE_TRIGGER = f"""
CREATE TRIGGER IF NOT EXISTS members_member_profile_changed
AFTER UPDATE OF {", ".join(PROFILE_COLUMNS)} ON members_member
FOR EACH ROW WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in PROFILE_COLUMNS)}
BEGIN
    UPDATE members_member SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now') WHERE id = NEW.id;
END;
"""


def sqlite_trigger_restore(sender=None, using: str = "default", **kwargs) -> None:
    """``post_migrate`` receiver: the trigger back on an SQLite database that lost it."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = connection.introspection.table_names()
    if "members_member" not in tables:
        return
    with connection.cursor() as cursor:
        cursor.execute(SQLITE_TRIGGER)
