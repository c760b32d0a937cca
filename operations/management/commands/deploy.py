"""`manage.py deploy`: set up a new or upgraded database in one step (docs/deploy.md).

1. the database answers (else a message naming DATABASE_URL and what in it to fix),
2. migrate, 3. setup_periodic_tasks (beat's schedules), 4. setup_roles (staff groups),
5. check --deploy: in production any warning fails the deploy (--fail-level to change).

Every step is idempotent, so the command runs on every release, before the new code
takes traffic. config/wsgi.py runs the same database check when a production web
process starts.
"""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections


def database_problem(alias: str = "default") -> str | None:
    """What is wrong with the database connection, in words naming the variable to fix; None if it answers."""
    connection = connections[alias]
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return _explain(str(error), connection.settings_dict)
    return None


def _explain(error: str, database: dict) -> str:
    where = f"{database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"
    name, user = database.get("NAME"), database.get("USER")
    lowered = error.lower()
    if "does not exist" in lowered and "database" in lowered:
        fix = f"the database {name!r} does not exist on {where}: create it (createdb {name}) or fix its name in"
    elif "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        fix = f"the database server at {where} refused the user {user!r}: fix the user or password in"
    elif "no pg_hba.conf entry" in lowered:
        fix = f"the database server at {where} does not accept this machine for user {user!r} (pg_hba.conf); or fix"
    elif any(
        word in lowered
        for word in ("connection refused", "could not translate host", "timeout", "timed out", "no route")
    ):
        fix = f"cannot reach a database server at {where}: start PostgreSQL there or fix the host and port in"
    else:
        fix = "the database refused the connection: check"
    # The first line of the driver's message, never the URL: it holds the password.
    first_line = error.strip().splitlines()[0] if error.strip() else ""
    return f"{fix} DATABASE_URL. ({first_line})"


class Command(BaseCommand):
    help = "Set up a new or upgraded database: migrate, periodic tasks, staff roles, then check --deploy."

    def add_arguments(self, parser):
        parser.add_argument(
            "--fail-level",
            choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"],
            default=None,
            help="The check level that fails the deploy (default: WARNING in production, ERROR otherwise).",
        )

    def handle(self, *args, fail_level=None, verbosity=1, **options):
        problem = database_problem()
        if problem:
            raise CommandError(problem)
        steps = [
            ("migrate", {"interactive": False}),
            ("setup_periodic_tasks", {}),
            ("setup_roles", {}),
        ]
        for name, step_options in steps:
            self.stdout.write(f"==> {name}")
            call_command(name, verbosity=verbosity, stdout=self.stdout, stderr=self.stderr, **step_options)
        level = fail_level or ("WARNING" if settings.PRODUCTION else "ERROR")
        self.stdout.write(f"==> check --deploy (fails on {level})")
        try:
            call_command("check", deploy=True, fail_level=level, stdout=self.stdout, stderr=self.stderr)
        except CommandError as error:
            raise CommandError(
                f"The database is set up, but the configuration is not fit for production: {error}"
            ) from error
        self.stdout.write(self.style.SUCCESS("Deploy steps done."))
