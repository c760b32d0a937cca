"""Admin for member files imported in the background (``ImportJob``, operations.imports).

Upload a file, watch the check, read every bad row (or download them as CSV), confirm,
watch the import. The admin stays thin: every change goes through ``operations.imports``.

Who may: staff with the *add member* and *change member* permissions, like the admin's
synchronous import, who also see every store (superusers, brand admins): an import
matches members of every store by phone, so a store-scoped user may not run one.
"""

import csv

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from core.errors import LoyaltyError
from members.models import ImportJob
from members.scoping import sees_everything

from . import imports
from .import_files import template_csv, template_xlsx

RUNNING = (ImportJob.Status.CHECKING, ImportJob.Status.IMPORTING)
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def template_response(fmt: str) -> HttpResponse:
    """The member file template as a download: ``members-template.csv`` or ``.xlsx``."""
    if fmt == "xlsx":
        response = HttpResponse(template_xlsx(), content_type=XLSX_TYPE)
    else:
        fmt = "csv"
        response = HttpResponse(template_csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="members-template.{fmt}"'
    return response


class UploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("Member file"),
        help_text=gettext_lazy(
            "CSV (UTF-8) or XLSX with a header row: phone, name, gender, birthday, email, home_store, "
            "opening_points. Every row is checked first; nothing is imported until you confirm."
        ),
    )


def job_progress(job: ImportJob) -> dict:
    """What the progress bar shows: the pass, rows done of rows, percent, and whether it is over."""
    importing = job.status in (ImportJob.Status.IMPORTING, ImportJob.Status.DONE, ImportJob.Status.FAILED)
    done_rows = job.imported_rows if importing else job.checked_rows
    total = job.total_rows
    percent = min(100, int(done_rows * 100 / total)) if total else 0
    if job.status == ImportJob.Status.DONE:
        percent = 100
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": str(job.get_status_display()),
        "phase": "import" if importing else "check",
        "rows_done": done_rows,
        "total_rows": total,
        "percent": percent,
        "error_count": job.error_count,
        "done": job.status not in RUNNING,
        "message": job.message,
        "summary": job.summary,
    }


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("original_name", "status", "total_rows", "error_count", "imported_rows", "created_by", "created_at")
    list_filter = ("status",)
    list_select_related = ("created_by",)
    ordering = ("-created_at", "-id")
    upload_template = "admin/members/importjob/upload.html"
    detail_template = "admin/members/importjob/detail.html"

    # --- permissions: the member import's, and only for users who see every store ---

    def _may_import(self, request) -> bool:
        user = request.user
        return user.has_perms(["members.add_member", "members.change_member"]) and sees_everything(user)

    def has_module_permission(self, request):
        return self._may_import(request)

    def has_view_permission(self, request, obj=None):
        return self._may_import(request)

    def has_add_permission(self, request):
        return self._may_import(request)

    def has_change_permission(self, request, obj=None):
        return self._may_import(request)

    def has_delete_permission(self, request, obj=None):
        return False  # the job is the record of what was imported

    # --- pages ---

    def get_urls(self):
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("template.csv", view(self.template_view), name=f"{info}_template"),
            path("template.xlsx", view(self.template_view), {"fmt": "xlsx"}, name=f"{info}_template_xlsx"),
            path("<path:object_id>/status/", view(self.status_view), name=f"{info}_status"),
            path("<path:object_id>/errors.csv", view(self.errors_view), name=f"{info}_errors"),
            path("<path:object_id>/confirm/", view(self.confirm_view), name=f"{info}_confirm"),
            path("<path:object_id>/resume/", view(self.resume_view), name=f"{info}_resume"),
            *super().get_urls(),
        ]

    def _job(self, request, object_id) -> ImportJob:
        if not self._may_import(request):
            raise PermissionDenied
        try:
            return get_object_or_404(ImportJob.objects.select_related("created_by"), pk=int(unquote(object_id)))
        except ValueError:
            raise Http404 from None

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = imports.import_job_create(file=form.cleaned_data["file"], user=request.user)
            except LoyaltyError as error:
                form.add_error("file", error.message)
            else:
                self.message_user(request, _("The file is being checked. Nothing is imported until you confirm."))
                return HttpResponseRedirect(reverse("admin:members_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import members from a file"),
            "form": form,
            "max_mb": imports.MAX_UPLOAD_BYTES // 2**20,
        }
        return TemplateResponse(request, self.upload_template, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job(request, object_id)
        stuck = imports.import_job_is_stuck(job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": job,
            "title": _("Import of %(name)s") % {"name": job.original_name},
            "job": job,
            "progress": job_progress(job),
            "error_rows": [
                {"row": entry["row"], "phone": entry.get("phone", ""), "column": column, "reason": reason}
                for entry in job.errors
                for column, reasons in entry["errors"].items()
                for reason in reasons
            ],
            "more_errors": job.error_count - len(job.errors),
            "can_confirm": job.status == ImportJob.Status.CHECKED,
            "can_resume": job.status == ImportJob.Status.FAILED or stuck,
        }
        if stuck:
            since = timezone.localtime(job.progress_at or job.started_at or job.created_at)
            self.message_user(
                request,
                _(
                    "This job has made no progress since %(time)s: its background task was probably lost "
                    "(a worker or the broker restarted). Resume it to continue where it stopped."
                )
                % {"time": date_format(since, "DATETIME_FORMAT")},
                messages.WARNING,
            )
        return TemplateResponse(request, self.detail_template, context)

    def status_view(self, request, object_id):
        return JsonResponse(job_progress(self._job(request, object_id)))

    def template_view(self, request, fmt: str = "csv"):
        """A file to fill in (CSV or XLSX): the columns the import reads and one example row."""
        if not self._may_import(request):
            raise PermissionDenied
        return template_response(fmt)

    def errors_view(self, request, object_id):
        job = self._job(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
        response.write("\ufeff")  # so a spreadsheet opens it as UTF-8
        writer = csv.writer(response)
        writer.writerow(["row", "phone", "column", "reason"])
        for entry in job.errors:
            for column, reasons in entry["errors"].items():
                for reason in reasons:
                    # A cell starting with = + - @ would run as a formula in the spreadsheet.
                    phone = entry.get("phone", "")
                    writer.writerow([entry["row"], "'" + phone if phone[:1] in "=+-@" else phone, column, reason])
        return response

    def confirm_view(self, request, object_id):
        return self._start(request, object_id, resume=False)

    def resume_view(self, request, object_id):
        return self._start(request, object_id, resume=True)

    def _start(self, request, object_id, *, resume: bool):
        job = self._job(request, object_id)
        if request.method != "POST":
            return require_POST(lambda r: None)(request)
        try:
            if resume:
                imports.import_job_resume(job_id=job.pk, user=request.user)
            else:
                imports.import_job_confirm(job_id=job.pk, user=request.user)
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(request, _("The import has started. This page shows its progress."))
        return HttpResponseRedirect(reverse("admin:members_importjob_change", args=[job.pk]))
