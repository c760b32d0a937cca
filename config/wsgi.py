"""The WSGI application: `gunicorn -c config/gunicorn.py config.wsgi` (docs/deploy.md).

In production a web process checks the database once before it takes requests: a wrong
DATABASE_URL then stops gunicorn with a message naming what to fix, instead of starting
and answering every request with an error page.
"""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

if os.environ.get("DJANGO_ENV") == "production":
    from django.db import connections

    from operations.management.commands.deploy import database_problem

    problem = database_problem()
    connections.close_all()  # each gunicorn worker opens its own
    if problem:
        print(f"Cannot start: {problem}", file=sys.stderr, flush=True)
        sys.exit(3)  # gunicorn reads 3 as "worker failed to boot" and stops instead of respawning
