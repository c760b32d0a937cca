"""Plans and badges bump the programme's version (loyalty migration 0008's trigger), so what
``programme`` keeps with loyalty's cached configuration (whether a plan multiplies points,
whether a badge is active: ``loyalty.configuration.Programme.extra``) is never stale."""

from django.db import migrations

TABLES = ("programme_plan", "programme_badge")


def triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # elsewhere nothing is cached: the configuration is read every time
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_programme AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION loyalty_programme_bump()"
        )


def triggers_dropped(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_programme ON {table}")


class Migration(migrations.Migration):
    dependencies = [
        ("programme", "0009_partner_translations"),
        ("loyalty", "0008_programme_version"),
    ]

    operations = [migrations.RunPython(triggers, triggers_dropped)]
