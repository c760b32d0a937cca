"""Bulk jobs in the admin: staff prepare an award to a segment or an uploaded list, see
its preview, confirm it, watch its progress and download the result file."""

import csv
import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from core.errors import LoyaltyError
from loyalty.models import CouponKind
from members.models import Segment

from .models import BulkJob
from .services import MAX_AWARD, award_job_confirm, award_job_preview, job_counts, job_result_rows
from .tasks import enqueue


class AwardForm(forms.Form):
    segment = forms.ModelChoiceField(label=_("segment"), queryset=Segment.objects.all(), required=False)
    members_file = forms.FileField(
        label=_("or a list of members"),
        required=False,
        help_text=_("A text or CSV file: one member number or phone number a line (the first column)."),
    )
    currency = forms.ChoiceField(label=_("currency"), choices=[("points", _("points")), ("growth", _("growth"))])
    amount = forms.IntegerField(label=_("points per member"), min_value=0, max_value=10**7)
    reason = forms.CharField(label=_("reason"), max_length=200)
    coupon_title = forms.CharField(
        label=_("coupon title"),
        max_length=100,
        required=False,
        help_text=_("Also give each member a coupon (points per member may then be 0)."),
    )
    coupon_kind = forms.ChoiceField(label=_("coupon kind"), choices=CouponKind.choices, required=False)
    coupon_value = forms.DecimalField(
        label=_("coupon value"), min_value=0, max_digits=10, decimal_places=2, required=False
    )
    coupon_days = forms.IntegerField(
        label=_("coupon valid days"), min_value=1, max_value=3650, initial=30, required=False
    )

    def clean(self):
        data = super().clean()
        if bool(data.get("segment")) == bool(data.get("members_file")):
            raise forms.ValidationError(_("Choose a segment or upload a list, not both."))
        upload = data.get("members_file")
        if upload:
            if upload.size > 5 * 1024 * 1024:
                raise forms.ValidationError(_("The file is larger than 5 MB."))
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError(_("The file is not UTF-8 text.")) from None
            rows = [row[0].strip() for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
            if not rows:
                raise forms.ValidationError(_("The file lists no members."))
            if len(rows) > MAX_AWARD:
                raise forms.ValidationError(_("At most %(max)s members in one award.") % {"max": MAX_AWARD})
            data["identifiers"] = rows
        return data


@admin.register(BulkJob)
class BulkJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "done", "total", "amount", "reason", "created_by", "created_at")
    list_filter = ("kind", "status")
    change_form_template = "admin/bulk/bulkjob/change_form.html"
    readonly_fields = [
        "kind",
        "status",
        "created_by",
        "segment",
        "source",
        "currency",
        "amount",
        "reason",
        "coupon",
        "total",
        "done",
        "preview",
        "created_at",
        "confirmed_at",
        "finished_at",
    ]
    exclude = ("store",)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("<int:pk>/confirm/", self.admin_site.admin_view(self.confirm_view), name="bulk_bulkjob_confirm"),
            path("<int:pk>/results.csv", self.admin_site.admin_view(self.results_view), name="bulk_bulkjob_results"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AwardForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                job = award_job_preview(
                    actor=request.user,
                    currency=data["currency"],
                    amount=data["amount"],
                    reason=data["reason"],
                    segment=data.get("segment"),
                    identifiers=data.get("identifiers"),
                    source="segment" if data.get("segment") else "upload",
                    coupon={
                        "title": data["coupon_title"],
                        "kind": data.get("coupon_kind"),
                        "value": data.get("coupon_value") or 0,
                        "valid_days": data.get("coupon_days") or 30,
                    }
                    if data.get("coupon_title")
                    else None,
                )
            except LoyaltyError as error:
                form.add_error(None, error.message)
            else:
                return HttpResponseRedirect(reverse("admin:bulk_bulkjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Award points to many members"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/bulk/bulkjob/award_form.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = get_object_or_404(BulkJob, pk=object_id)
        extra = {"job": job, "counts": job_counts(job), "progress": round(job.progress * 100)}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def confirm_view(self, request, pk: int):
        job = get_object_or_404(BulkJob, pk=pk)
        if request.method != "POST" or not self.has_view_permission(request, job):
            raise PermissionDenied
        try:
            award_job_confirm(job=job, actor=request.user, enqueue=enqueue)
        except LoyaltyError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(request, _("Confirmed: the award runs in the background."), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:bulk_bulkjob_change", args=[job.pk]))

    def results_view(self, request, pk: int):
        job = get_object_or_404(BulkJob, pk=pk)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="bulk-job-{job.pk}.csv"'
        response.write("\ufeff")  # Excel opens UTF-8 with a BOM
        writer = csv.writer(response)
        for row in job_result_rows(job):
            writer.writerow(row)
        return response
