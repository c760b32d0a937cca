"""Batch orders for shop systems and ERPs, bulk awards for staff, and their jobs
(docs/bulk.md)."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from bulk.models import BulkJob, BulkLine
from bulk.services import MAX_AWARD, MAX_ORDERS, award_job_confirm, award_job_preview, job_counts, orders_batch
from bulk.tasks import enqueue
from core.errors import LoyaltyError
from members.models import Segment

from .. import serializers as s
from ..models import ApiToken, StoreApiKey
from .common import clean_member_number, errors, example
from .pos import PosView


def _line_values(request, view: PosView, raw, stores: dict) -> dict:
    """One order of a batch, validated: the values for ``orders_batch`` or ``refused``."""
    data = s.OrderEarnIn(data=raw if isinstance(raw, dict) else {})
    number = str(raw.get("number", ""))[:64] if isinstance(raw, dict) else ""
    if not data.is_valid():
        fields = {k: str(v[0]) if isinstance(v, list) else str(v) for k, v in data.errors.items()}
        return {
            "number": number,
            "member_number": "",
            "refused": ["invalid", _("Some fields are not valid.") + f" {fields}"],
        }
    values = data.validated_data
    code = values.get("store")
    if code not in stores:
        try:
            stores[code] = view.store(request, code).pk
        except LoyaltyError as error:
            stores[code] = error
    store = stores[code]
    out = {
        "member_number": clean_member_number(values["member_number"]),
        "number": values["number"],
        "amount": str(values["amount"]),
        "points_paid_amount": str(values["points_paid_amount"]),
        "occurred_at": values["occurred_at"].isoformat() if values.get("occurred_at") else None,
        "lines": [{k: str(v) if k == "amount" else v for k, v in line.items()} for line in values.get("lines", [])],
    }
    if isinstance(store, LoyaltyError):
        out["refused"] = [store.code, str(store.message)]
    else:
        out["store_id"] = store
    return out


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    preview = serializers.DictField(required=False)


JOB_EXAMPLE = {"id": 17, "kind": "orders", "status": "running", "total": 800, "done": 350}
RESULT_EXAMPLE = {
    "line": 0,
    "number": "A-10023",
    "status": "done",
    "earned": {"points": {"amount": 0, "pending_amount": 128}},
}


def job_out(job: BulkJob) -> dict:
    return {"id": job.pk, "kind": job.kind, "status": job.status, "total": job.total, "done": job.done} | (
        {"preview": job.preview} if job.kind == BulkJob.Kind.AWARD else {}
    )


class OrderBatchView(PosView):
    pos_action = StoreApiKey.Action.EARN

    class OrderBatchIn(serializers.Serializer):
        orders = serializers.ListField(child=serializers.JSONField(), min_length=1, max_length=MAX_ORDERS)

    class OrderBatchOut(serializers.Serializer):
        results = serializers.ListField(child=serializers.DictField(), required=False)
        job = JobOut(required=False)

    @extend_schema(
        operation_id="pos_order_batch",
        tags=["pos"],
        summary="Earn points for many orders",
        description=(
            "Up to 1,000 orders, each as in POST /pos/orders/ and idempotent by store + order number. Up to 100 "
            "are answered at once (200, one result per order: done, replayed or refused with its code); more are "
            "processed in the background (202 with a job to poll at /pos/jobs/<id>/)."
        ),
        request=OrderBatchIn,
        responses={200: OrderBatchOut, 202: OrderBatchOut, **errors(400, 401, 403)},
        examples=[
            example(
                "batch",
                {"orders": [{"member_number": "8123456782", "number": "A-10023", "amount": "128.00"}]},
                request=True,
            ),
            example("answered", {"results": [RESULT_EXAMPLE]}),
            example("background", {"job": JOB_EXAMPLE | {"status": "queued", "done": 0}}, status=202),
        ],
    )
    def post(self, request):
        data = self.OrderBatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        stores: dict = {}
        orders = [_line_values(request, self, raw, stores) for raw in data.validated_data["orders"]]
        key = request.auth if isinstance(request.auth, StoreApiKey) else None
        job, results = orders_batch(
            orders=orders, owner_key_id=key.pk if key else None, actor=request.user, enqueue=enqueue
        )
        if job is None:
            return Response({"results": results})
        return Response({"job": job_out(job)}, status=status.HTTP_202_ACCEPTED)


def _owned_job(request, pk: int) -> BulkJob:
    """A job the caller started: its store key's, or the staff user's own. Others are 404."""
    if request.auth is None and not request.user.is_authenticated:
        raise NotAuthenticated
    if isinstance(request.auth, StoreApiKey):
        return get_object_or_404(BulkJob, pk=pk, owner_key_id=request.auth.pk)
    if request.user.is_authenticated and request.user.is_staff:
        return get_object_or_404(BulkJob, pk=pk, created_by=request.user, owner_key_id__isnull=True)
    raise LoyaltyError("permission_denied", _("You are not allowed to do this."))


class JobView(APIView):
    """The store key that sent a batch, or the staff member who started a job."""

    permission_classes = [AllowAny]  # _owned_job

    class JobQuery(serializers.Serializer):
        after = serializers.IntegerField(min_value=-1, required=False, default=-1, help_text="Last line seen.")
        limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=1000)

    @extend_schema(
        operation_id="pos_job",
        tags=["pos"],
        summary="A background batch: progress and results",
        parameters=[JobQuery],
        responses={200: JobOut, **errors(400, 401, 403, 404)},
        examples=[example("job", JOB_EXAMPLE | {"counts": {"done": 340, "refused": 10}, "results": [RESULT_EXAMPLE]})],
    )
    def get(self, request, pk: int):
        job = _owned_job(request, pk)
        query = self.JobQuery(data=request.query_params)
        if not query.is_valid():
            raise LoyaltyError(
                "invalid", _("Some fields are not valid."), fields={k: str(v[0]) for k, v in query.errors.items()}
            )
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        lines = BulkLine.objects.filter(job=job, n__gt=after).exclude(status=BulkLine.Status.PENDING).order_by("n")
        results = [
            {"line": line.n, "number": line.given, "status": line.status}
            | ({"error": {"code": line.code, "message": line.message}} if line.code else {})
            | (line.result or {})
            for line in lines[:limit]
        ]
        return Response(job_out(job) | {"counts": job_counts(job), "results": results})


class StaffView(APIView):
    permission_classes = [AllowAny]  # require_staff_caller, once the body is read

    @staticmethod
    def require_staff_caller(request) -> None:
        """A staff token or a staff session; checked after the body is read (a body the API
        cannot read is a 415 first)."""
        auth = request.auth
        if auth is None and not request.user.is_authenticated:
            raise NotAuthenticated
        staff_token = isinstance(auth, ApiToken) and auth.kind == ApiToken.Kind.STAFF
        session = auth is None and request.user.is_authenticated and request.user.is_staff
        if not (staff_token or session):
            raise LoyaltyError("permission_denied", _("You are not allowed to do this."))


class AwardJobsView(StaffView):
    class AwardIn(serializers.Serializer):
        currency = serializers.CharField(max_length=10, default="points", help_text="points or growth.")
        amount = serializers.IntegerField(min_value=0, max_value=10**7, help_text="Points per member; 0 with a coupon.")
        coupon = serializers.DictField(
            required=False, help_text='A coupon for each member: {"title", "kind", "value", "valid_days"}.'
        )
        reason = serializers.CharField(max_length=200)
        members = serializers.ListField(
            child=serializers.CharField(max_length=64),
            required=False,
            max_length=MAX_AWARD,
            help_text="Member numbers or phone numbers.",
        )
        segment = serializers.IntegerField(required=False, help_text="A saved segment's id, instead of members.")

    @extend_schema(
        operation_id="bulk_award_preview",
        tags=["bulk"],
        summary="Prepare a bulk award (preview)",
        description=(
            "Staff only. Up to 100,000 members by number or phone, or a segment. Nothing is awarded until "
            "POST /bulk/awards/<id>/confirm/; the preview says how many members, the total and what is skipped."
        ),
        request=AwardIn,
        responses={201: JobOut, **errors(400, 401, 403)},
        examples=[
            example(
                "award",
                {"amount": 100, "reason": "Anniversary gift", "members": ["8123456782", "13800138000"]},
                request=True,
            ),
            example(
                "preview",
                {
                    "id": 18,
                    "kind": "award",
                    "status": "preview",
                    "total": 2,
                    "done": 0,
                    "preview": {"members": 2, "total_points": 200, "skipped": {}},
                },
                status=201,
            ),
        ],
    )
    def post(self, request):
        data = self.AwardIn(data=request.data)
        self.require_staff_caller(request)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        segment = None
        if values.get("segment") is not None:
            segment = Segment.objects.filter(pk=values["segment"]).first()
            if segment is None:
                raise LoyaltyError(
                    "invalid", _("Some fields are not valid."), fields={"segment": _("No such segment.")}
                )
        job = award_job_preview(
            actor=request.user,
            currency=values["currency"],
            amount=values["amount"],
            reason=values["reason"],
            segment=segment,
            identifiers=values.get("members"),
            coupon=values.get("coupon"),
            source="api",
        )
        return Response(job_out(job), status=status.HTTP_201_CREATED)


class AwardConfirmView(StaffView):
    @extend_schema(
        operation_id="bulk_award_confirm",
        tags=["bulk"],
        summary="Confirm a previewed bulk award",
        description=(
            "Starts it in the background; poll GET /pos/jobs/<id>/. The total must be within your adjustment limit."
        ),
        request=None,
        responses={202: JobOut, **errors(400, 401, 403, 404)},
        examples=[example("started", JOB_EXAMPLE | {"kind": "award", "status": "queued", "done": 0}, status=202)],
    )
    def post(self, request, pk: int):
        self.require_staff_caller(request)
        job = _owned_job(request, pk)
        job = award_job_confirm(job=job, actor=request.user, enqueue=enqueue)
        return Response(job_out(job), status=status.HTTP_202_ACCEPTED)
