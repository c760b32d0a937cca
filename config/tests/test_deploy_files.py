"""The files in deploy/ are used as they are; what cannot run here (systemd, docker, nginx) is parsed.

Each command in a systemd unit, the Procfile and the compose file must name a program
of the virtualenv, files that exist, a manage.py command that exists and queues the
workers know; every environment variable they set must be one the settings (or gunicorn)
read; the compose file's environment must load the production settings. docs/deploy.md
says which file is checked how.
"""

import os
import re
import shlex
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL_DIR = "/srv/loyalty"
QUEUES = {"ledger", "contact", "bulk", "celery"}


def settings_variables() -> set[str]:
    """Every environment variable config/settings.py and config/gunicorn.py read."""
    names: set[str] = set()
    for source in ("config/settings.py", "config/gunicorn.py"):
        text = (ROOT / source).read_text()
        names |= set(re.findall(r"""env(?:_bool|_int|_list)?\(\s*["']([A-Z0-9_]+)["']""", text))
        names |= set(re.findall(r"""_int\(\s*["']([A-Z0-9_]+)["']""", text))
        names |= set(re.findall(r"""environ\.get\(\s*["']([A-Z0-9_]+)["']""", text))
    return names


def check_command(argv: list[str]) -> None:
    """The command runs here: its program, files, manage.py command and queues exist."""
    program = Path(argv[0]).name
    if argv[0].startswith("/"):
        assert argv[0].startswith(f"{INSTALL_DIR}/.venv/bin/"), argv
        assert (ROOT / argv[0].removeprefix(f"{INSTALL_DIR}/")).exists(), argv
    assert program in {"gunicorn", "celery", "python"}, argv
    assert (ROOT / ".venv" / "bin" / program).exists(), argv
    if program == "gunicorn":
        config = argv[argv.index("-c") + 1]
        assert (ROOT / config).is_file(), argv
        assert argv[-1] == "config.wsgi" and (ROOT / "config" / "wsgi.py").is_file(), argv
    elif program == "celery":
        assert argv[1:3] == ["-A", "config"], argv
        assert argv[3] in {"worker", "beat"}, argv
        if argv[3] == "worker":
            (queues,) = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--queues=")]
            assert set(queues.split(",")) <= QUEUES, argv
        else:
            scheduler = argv[argv.index("--scheduler") + 1]
            assert scheduler == settings.CELERY_BEAT_SCHEDULER, argv
    else:
        assert argv[1] == "manage.py", argv
        assert argv[2] in get_commands(), argv


def consumed_queues(argvs: list[list[str]]) -> set[str]:
    queues: set[str] = set()
    for argv in argvs:
        for arg in argv:
            if arg.startswith("--queues="):
                queues |= set(arg.split("=", 1)[1].split(","))
    return queues


def routed_queues() -> set[str]:
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    if isinstance(routes, dict):
        queues |= {route["queue"] for route in routes.values() if isinstance(route, dict) and "queue" in route}
    return queues


# --- systemd ---------------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file: {section: {key: [values...]}} (keys such as ExecStart may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None and _, f"{path.name}: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_there_is_a_unit_for_web_each_worker_queue_beat_and_the_release_step():
    names = {unit.name for unit in UNITS}
    assert {
        "loyalty-web.service",
        "loyalty-worker-ledger.service",
        "loyalty-worker-contact.service",
        "loyalty-worker-bulk.service",
        "loyalty-beat.service",
        "loyalty-deploy.service",
    } <= names
    assert (DEPLOY / "systemd" / "loyalty.target").is_file()


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_unit_runs_commands_that_exist_as_a_plain_user(unit):
    service = read_unit(unit)["Service"]
    assert service["User"] == ["loyalty"] and service["WorkingDirectory"] == [INSTALL_DIR]
    assert service["EnvironmentFile"][0] == "/etc/loyalty/loyalty.env"
    environment = {}
    for assignment in service.get("Environment", []):
        key, _, value = assignment.partition("=")
        environment[key] = value
    known = settings_variables() | {"CELERY_WORKER_CONCURRENCY"}
    assert set(environment) <= known, unit.name
    for line in service["ExecStart"]:
        # systemd's ${VAR} is one word; %H the host name.
        argv = [re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], word) for word in shlex.split(line)]
        check_command(argv)
    if unit.name.startswith("loyalty-worker") or unit.name == "loyalty-beat.service":
        assert service["EnvironmentFile"][1] == "-/etc/loyalty/worker.env"
        assert read_unit(unit)["Install"]["WantedBy"] == ["loyalty.target"]


def test_systemd_workers_consume_every_queue_tasks_are_routed_to():
    argvs = [shlex.split(line) for unit in UNITS for line in read_unit(unit)["Service"]["ExecStart"]]
    assert routed_queues() | {"ledger", "contact", "bulk"} <= consumed_queues(argvs)


def test_environment_examples_set_only_variables_the_settings_read():
    known = settings_variables()
    loyalty_env = read_env_file(DEPLOY / "loyalty.env.example")
    worker_env = read_env_file(DEPLOY / "worker.env.example")
    assert set(loyalty_env) <= known, set(loyalty_env) - known
    assert set(worker_env) <= known
    assert loyalty_env["DJANGO_ENV"] == "production"
    assert worker_env["DATABASE_POOLER"] == "session" and worker_env["DATABASE_URL"].endswith("/loyalty_session")
    assert loyalty_env["DATABASE_POOLER"] == "transaction"


# --- Procfile --------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    processes = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            assert re.fullmatch(r"[a-z_]+", name), line
            processes[name] = command.strip()
    return processes


def test_procfile_has_web_workers_per_queue_beat_and_release_that_run_here():
    processes = procfile()
    assert {"release", "web", "worker_ledger", "worker_contact", "worker_bulk", "beat"} == set(processes)
    for _name, command in processes.items():
        for part in command.split("&&"):
            check_command(shlex.split(part))
    argvs = [shlex.split(command) for command in processes.values()]
    assert routed_queues() | {"ledger", "contact", "bulk"} <= consumed_queues(argvs)
    assert sum(argv[3:4] == ["beat"] for argv in argvs) == 1


# --- Dockerfile and compose ------------------------------------------------------------


def test_dockerfile_runs_as_a_non_root_user_without_dev_dependencies():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#") and not line[0].islower()]
    assert instructions[0].startswith("FROM python:3.11")
    text = "\n".join(lines)
    assert "requirements-dev" not in text
    assert "pip install -r /app/requirements.txt" in text
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    # The last USER comes before the CMD: the app never runs as root.
    assert lines.index(f"USER {users[-1]}") < next(i for i, line in enumerate(lines) if line.startswith("CMD ["))
    for line in instructions:
        if line.startswith("COPY "):
            sources = [word for word in line.split()[1:-1] if not word.startswith("--")]
            assert all((ROOT / source).exists() for source in sources), line
    cmd = next(line for line in instructions if line.startswith("CMD ["))
    check_command(yaml.safe_load(cmd.removeprefix("CMD ")))
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _substitute(value: str, values: dict[str, str]) -> str:
    # ${NAME:?message} and ${NAME:-default}, as docker compose reads them.
    return re.sub(
        r"\$\{(\w+)(?::([?-])([^}]*))?\}",
        lambda m: values.get(m.group(1)) or (m.group(3) if m.group(2) == "-" else ""),
        value,
    )


def test_compose_has_postgresql_redis_with_append_only_web_workers_and_one_beat():
    services = _compose()["services"]
    assert {"postgres", "redis", "web", "worker-ledger", "worker-contact", "worker-bulk", "beat", "release"} == set(
        services
    )
    assert services["postgres"]["image"].startswith("postgres:15")
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    for name in ("web", "worker-ledger", "worker-contact", "worker-bulk", "beat", "release"):
        check_command(services[name]["command"])
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    argvs = [services[name]["command"] for name in services if name.startswith("worker")]
    assert routed_queues() | {"ledger", "contact", "bulk"} <= consumed_queues(argvs)
    assert "deploy" not in services.get("beat", {})  # no replicas: exactly one beat


def test_compose_environment_is_the_settings_variables_and_loads_the_production_settings():
    services = _compose()["services"]
    environment = services["web"]["environment"]
    assert set(environment) <= settings_variables(), set(environment) - settings_variables()
    for name in ("DJANGO_ENV", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert name in environment
    for name in services:
        if name not in ("postgres", "redis"):
            assert services[name]["environment"] == environment, name
    values = {"DJANGO_SECRET_KEY": "s" * 60, "DJANGO_ALLOWED_HOSTS": "members.example.com", "POSTGRES_PASSWORD": "pw"}
    resolved = {key: _substitute(str(value), values) for key, value in environment.items()}
    # The database and broker hosts are the compose services of those names.
    assert "@postgres:5432/" + services["postgres"]["environment"]["POSTGRES_DB"] in resolved["DATABASE_URL"]
    assert resolved["DATABASE_URL"].startswith(f"postgres://{services['postgres']['environment']['POSTGRES_USER']}:")
    assert resolved["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL, s.MEDIA_ROOT, s.LOYALTY_IMPORT_ROOT, s.DEBUG)"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env |= resolved | {"DJANGO_SETTINGS_MODULE": "config.settings", "LOYALTY_VAR_DIR": str(ROOT / "var")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["postgres", "redis://redis:6379/0", "/shared/media", "/shared/imports", "False"]
    # Uploads land on the volume every app container mounts.
    assert all("shared:/shared" in services[name]["volumes"] for name in services if name not in ("postgres", "redis"))


# --- nginx and pgbouncer ---------------------------------------------------------------


def test_nginx_site_proxies_to_gunicorn_with_the_request_id_and_serves_media():
    text = (DEPLOY / "nginx" / "loyalty.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert code.count("{") == code.count("}")
    assert all(line.rstrip().endswith((";", "{", "}")) for line in code.splitlines() if line.strip())
    env = read_env_file(DEPLOY / "loyalty.env.example")
    assert f"server {env['GUNICORN_BIND']} " in code
    assert "proxy_set_header X-Request-ID $request_id;" in code
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in code
    assert re.search(r"location /media/ \{\s*alias " + re.escape(env["DJANGO_MEDIA_ROOT"]) + "/;", code)
    assert "location = /metrics { return 404; }" in code
    assert "ssl_certificate " in code and "listen 443 ssl;" in code


def test_pgbouncer_config_pools_web_by_transaction_and_jobs_by_session():
    parser = ConfigParser()
    parser.read(DEPLOY / "pgbouncer" / "pgbouncer.ini")
    databases = dict(parser["databases"])
    assert "pool_mode=transaction" in databases["loyalty"]
    assert "pool_mode=session" in databases["loyalty_session"]
    env = read_env_file(DEPLOY / "loyalty.env.example")
    assert env["DATABASE_URL"].endswith(f":{parser['pgbouncer']['listen_port']}/loyalty")
