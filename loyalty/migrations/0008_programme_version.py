from django.db import migrations, models

# Tables whose rows are the programme's configuration (loyalty.configuration caches them).
CONFIGURATION_TABLES = ("loyalty_earnrule", "loyalty_earnrule_stores", "loyalty_tier", "loyalty_benefit")

BUMP = """
CREATE SEQUENCE IF NOT EXISTS loyalty_programme_version_seq;
CREATE OR REPLACE FUNCTION loyalty_programme_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A sequence, not version + 1: a rolled-back change must never leave a number that
    -- a process may have cached other rows under.
    INSERT INTO loyalty_programmeversion (id, version) VALUES (1, nextval('loyalty_programme_version_seq'))
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
"""


def triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # elsewhere (the SQLite first run) loyalty.configuration reads the configuration every time
    schema_editor.execute(BUMP)
    for table in CONFIGURATION_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_programme AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION loyalty_programme_bump()"
        )
    schema_editor.execute(
        "INSERT INTO loyalty_programmeversion (id, version) VALUES (1, nextval('loyalty_programme_version_seq')) "
        "ON CONFLICT (id) DO NOTHING"
    )


def triggers_dropped(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in CONFIGURATION_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_programme ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS loyalty_programme_bump()")
    schema_editor.execute("DROP SEQUENCE IF EXISTS loyalty_programme_version_seq")


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0007_shortfall_debt")]

    operations = [
        migrations.CreateModel(
            name="ProgrammeVersion",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("version", models.BigIntegerField(default=0)),
            ],
            options={"verbose_name": "programme version", "verbose_name_plural": "programme versions"},
        ),
        migrations.RunPython(triggers, triggers_dropped),
    ]
