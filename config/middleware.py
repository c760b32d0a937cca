"""Answers for errors no view handles: the database gone, a URL under /api/ that is no route.

``DatabaseUnavailableMiddleware`` sits first in MIDDLEWARE. When the database cannot be
reached (or drops the connection) it answers 503 with Retry-After instead of Django's
"Server Error (500)": the API's JSON error shape (code ``service_unavailable``) under
/api/, a friendly page (templates/503.html) for the member pages and the admin. It
catches the error wherever it happens: in a view (``process_exception``), and in a later
middleware such as the session or authentication one, whose exceptions Django has
already turned into a 500 by the time they come back here (they are recognised through
``got_request_exception``, sent while the exception is being handled). The API's own
views map the same errors in ``api.errors.exception_handler``.

``ApiErrorShapeMiddleware`` gives a URL under /api/ that matches no route (e.g. a
negative id) the error shape too, instead of Django's HTML "Not Found".
"""

import logging
import sys

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils import translation
from django.utils.translation import gettext as _

from api.errors import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, error_body, service_unavailable_body

logger = logging.getLogger(__name__)

_FLAG = "_loyalty_database_unavailable"


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the JSON error shape for the API, the friendly page otherwise.

    The page is rendered without the request's context processors: they would read the
    session and the user, that is the database that just failed.
    """
    # The error may come before LocaleMiddleware ran: pick the language here (cookie or
    # Accept-Language; neither needs the session).
    with translation.override(translation.get_language_from_request(request)):
        if _is_api(request):
            response = JsonResponse(service_unavailable_body(), status=503)
        else:
            context = {"retry_url": request.get_full_path(), "LANGUAGE_CODE": translation.get_language()}
            response = HttpResponse(loader.render_to_string("503.html", context), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _remember_database_error(sender, request=None, **kwargs) -> None:
    error = sys.exc_info()[1]
    if request is not None and isinstance(error, DATABASE_UNAVAILABLE):
        setattr(request, _FLAG, error)


got_request_exception.connect(_remember_database_error, dispatch_uid="loyalty-database-unavailable")


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            response = self.get_response(request)
        except DATABASE_UNAVAILABLE as error:  # only reaches here with DEBUG_PROPAGATE_EXCEPTIONS
            return self._unavailable(request, error)
        error = getattr(request, _FLAG, None)
        if error is not None and response.status_code == 500:
            return self._unavailable(request, error)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_UNAVAILABLE):
            return self._unavailable(request, exception)
        return None

    def _unavailable(self, request, error) -> HttpResponse:
        logger.warning("database unavailable, answered 503: %s %s: %s", request.method, request.path, error)
        return database_unavailable_response(request)


class ApiErrorShapeMiddleware:
    """Django's own 404 and 500 pages, under /api/, in the error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not _is_api(request) or response.status_code not in (404, 500):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 500 and settings.DEBUG:
            return response  # the traceback page is what a developer needs
        if response.status_code == 404:
            body = error_body("not_found", _("Not found."))
        else:
            body = error_body("server_error", _("Something went wrong on our side. It has been logged."))
        return JsonResponse(body, status=response.status_code)
