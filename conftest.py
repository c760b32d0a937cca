"""Shared fixtures. Factories live in tests/factories.py of each app."""

import os

import pytest
from hypothesis import settings as hypothesis_settings

# HYPOTHESIS_PROFILE=thorough (`make thorough`, scripts/thorough.sh): the ledger state
# machine runs 1000 examples. Without it the suite keeps hypothesis's defaults and each
# test's own settings.
hypothesis_settings.register_profile("thorough", max_examples=1000, deadline=None)
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
if os.environ.get("HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


# The longest tests (seconds per test or file measured with -n 0 --durations on this shared
# machine at load 3-14) run first, longest first: the pytest-xdist workers
# (scripts/test.sh, --dist worksteal) then end on short tests and finish together instead
# of one waiting for the other's last minute-long test. A file keeps its own order. Safe
# to run before the other database tests: a transactional test ends by putting back the
# migrated rows (core/tests/db_reset.py). A name that no longer matches is ignored.
SLOW_FIRST = [
    "loyalty/tests/test_ledger_stateful.py::test_ledger_state_machine",  # 72 s
    "loyalty/tests/test_jobs_kill.py",  # 60-70 s: workers killed, PostgreSQL and Redis restarted
    "api/tests/test_schemathesis.py",  # 57 s
    "operations/tests/test_import_browser.py",  # 56 s: 10 000 members through the browser
    "operations/tests/test_seed_demo.py",  # 30-70 s: the demo, seeded once for the file
    "rewards/tests/test_mall_property.py",  # 33 s
    "center/tests/test_browser.py",  # 30 s
    "loyalty/tests/test_beat_e2e.py",  # 20 s
    "operations/tests/test_import_job.py::test_a_big_import_job_completes",  # 15 s
    "rewards/tests/test_mall_seed.py",  # 15 s
    "operations/tests/test_journeys.py::test_demo_dormant_member_gets_the_win_back_coupon_from_the_nightly_run",
    "console/tests/test_till_browser.py",  # 13 s
    "config/tests/test_replica.py",  # 11-22 s: a primary and a pg_basebackup replica
    "config/tests/test_pgbouncer.py",  # pgbouncer and four threads
    "config/tests/test_start_checks.py",  # processes that must stop at start
    "config/tests/test_deploy.py",  # 12 tests starting processes: 2-7 s each
    "config/tests/test_logging.py",  # 11 s
    "config/tests/test_settings.py",  # processes: 6 s
]


def _slow_rank(nodeid: str) -> int:
    for rank, name in enumerate(SLOW_FIRST):
        if nodeid == name or nodeid.startswith((name + "::", name + "[")):
            return rank
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``thorough`` (the same assertions at full size) run in `make thorough`
    only; the slowest run first (SLOW_FIRST)."""
    if not THOROUGH:
        skipped = [item for item in items if item.get_closest_marker("thorough")]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [item for item in items if not item.get_closest_marker("thorough")]
    items.sort(key=lambda item: _slow_rank(item.nodeid))  # stable: the rest keep pytest-django's order


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashes():
    """Passwords hash with MD5 in tests: Django's PBKDF2 (1,000,000 rounds) takes ~0.8 s per
    user created or signed in on this machine, and hundreds of tests do one of the two. No
    test is about the hasher; production keeps Django's default (config/settings.py)."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, made quicker to write and to clean.

    Commits do not wait for the disk (``synchronous_commit = off`` on the test database
    only: a crash may lose the last commits of a database that is thrown away anyway),
    and each transactional test ends with a quicker clean slate than Django's TRUNCATE of
    every table (core/tests/db_reset.py)."""
    from django.db import connections

    from core.tests import db_reset

    with django_db_blocker.unblock():
        for connection in connections.all(initialized_only=False):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    name = connection.ops.quote_name(connection.settings_dict["NAME"])
                    cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
                connection.close()  # the setting applies to the connections opened from now on
        db_reset.baseline_take()
    db_reset.install()
    yield
    db_reset.uninstall()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("clerk", password="not-a-real-password-42", is_staff=True)


@pytest.fixture
def adjuster(django_user_model):
    """A staff user allowed to adjust points."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("supervisor", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    return user


@pytest.fixture(autouse=True)
def english_by_default(settings):
    """Tests read messages in English unless they ask for another language (see test_i18n)."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture
def sms(settings):
    """Messages are captured instead of sent: ``sms.sent`` and ``sms.last_code()``."""
    from members.tests.senders import CapturingSender

    settings.LOYALTY_NOTIFICATION_SENDER = "members.tests.senders.CapturingSender"
    CapturingSender.sent = []
    return CapturingSender
