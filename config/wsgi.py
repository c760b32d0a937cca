"""The WSGI application: `gunicorn -c config/gunicorn.py config.wsgi` (docs/deploy.md).

In production a web process checks the database and the broker once before it takes
requests (config.startup): a wrong DATABASE_URL or CELERY_BROKER_URL then stops gunicorn
with a message naming what to fix, instead of starting and answering every request with
an error page.
"""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

if os.environ.get("DJANGO_ENV") == "production":
    from config.startup import START_FAILED, start_problems

    problems = start_problems()
    for problem in problems:
        print(f"Cannot start: {problem}", file=sys.stderr, flush=True)
    if problems:
        sys.exit(START_FAILED)  # gunicorn reads 3 as "worker failed to boot" and stops instead of respawning
