"""The demo's journey with a control group: a win-back coupon tested against a 30% holdout.

After the history, members who had gone quiet "entered" the journey 95 to 200 days ago,
each on a day of their own; ``operations.journeys.held_out`` (the rule the real runs use)
keeps 30% of them out. The treated ones got a 20 yuan coupon (``rewards.services.coupon_issue``);
about half of them came back within weeks, against a fifth of the held-out members, with
orders posted through ``loyalty.services.order_earn`` like any late till upload. So the
journey page's report (operations.journey_report) shows a difference, a cost and an ROI.
The draws come from a generator of their own, so the rest of the demo is unchanged.
"""

import datetime as dt
import random
from decimal import Decimal

from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from modeltranslation.utils import build_localized_fieldname

from engagement.models import Journey, JourneyPosition, JourneyRun, JourneyStep, JourneyStepRun
from loyalty import services
from loyalty.models import CouponKind, texts_in_languages
from members.models import Member
from operations.journeys import held_out
from rewards.models import Coupon
from rewards.services import coupon_issue, texts_by_language

from .run import DemoRun
from .stores import DEMO_STORE_CODES, store_prefix

NAME = "Win-back test: 20 yuan off (30% held out)"
COUPON_VALUE = Decimal("20.00")


def _in_languages(field: str, text) -> dict:
    """A journey step's text in each language's column (engagement/translation.py)."""
    return {build_localized_fieldname(field, code): value for code, value in texts_by_language(lambda c: text).items()}


def journeys_demo_seed(run: DemoRun, now: dt.datetime) -> None:
    """The journey, its entries in the past and the orders that followed; nothing if it exists."""
    if Journey.objects.filter(name=NAME).exists():
        return
    rng = random.Random(2020)  # draws of its own: the rest of the demo stays as it was
    journey = Journey.objects.create(
        name=NAME,
        description=_("A coupon for members with no order for 60 days, tested against a control group."),
        trigger=Journey.Trigger.NO_ORDER,
        trigger_days=60,
        holdout_percent=30,
        is_marketing=True,
        cap_count=1,
        cap_days=180,
        quiet_start=dt.time(21, 0),
        quiet_end=dt.time(9, 0),
    )
    step = JourneyStep.objects.create(
        journey=journey,
        position=1,
        action=Journey.Action.ISSUE_COUPON,
        **_in_languages("coupon_title", gettext_lazy("20 yuan off: we miss you")),
        coupon_kind=CouponKind.AMOUNT_OFF,
        coupon_value=COUPON_VALUE,
        coupon_valid_days=30,
        **_in_languages("message_title", gettext_lazy("We miss you")),
        **_in_languages("message_body", gettext_lazy("{coupon}: show code {code} at the till, valid until {date}.")),
    )
    consent = Q(sms_consent_at__isnull=False) | Q(email_consent_at__isnull=False) | Q(wechat_consent_at__isnull=False)
    members = (
        Member.objects.filter(consent, home_store__code__in=DEMO_STORE_CODES, status=Member.Status.ACTIVE)
        .filter(joined_at__lt=run.end - dt.timedelta(days=260))
        .select_related("home_store")
        .order_by("id")
    )
    serial = 0
    for member in members:
        entered = (run.end - dt.timedelta(days=rng.randint(95, 200))).replace(hour=11)
        if held_out(journey, member.pk):
            reason = _("held out: in the control group (%(percent)s%%), nothing done") % {"percent": 30}
            JourneyRun.objects.create(
                journey=journey, member=member, event_key=f"demo:{entered:%Y-%m-%d}", created_at=entered,
                status=JourneyRun.Status.HELD_OUT, reason=reason,
            )  # fmt: skip
            comes_back = rng.random() < 0.2
        else:
            coupon = coupon_issue(
                member=member,
                title=texts_in_languages(step, "coupon_title"),
                kind=step.coupon_kind,
                value=COUPON_VALUE,
                expires_at=entered + dt.timedelta(days=31),
                source=Coupon.Source.JOURNEY,
                now=entered,
            )
            entry = JourneyRun.objects.create(
                journey=journey, member=member, event_key=f"demo:{entered:%Y-%m-%d}", created_at=entered,
                status=JourneyRun.Status.DONE, reason=_("coupon %(code)s issued") % {"code": coupon.code},
                detail={"coupon": coupon.pk},
            )  # fmt: skip
            JourneyPosition.objects.create(
                run=entry, journey=journey, member=member, step=2, since=entered, entered_at=entered,
                updated_at=entered, state=JourneyPosition.State.FINISHED,
            )  # fmt: skip
            JourneyStepRun.objects.create(
                run=entry, step=step, journey=journey, member=member, position=1, created_at=entered,
                status=JourneyStepRun.Status.DONE, reason=entry.reason, detail={"coupon": coupon.pk},
                coupon_value=COUPON_VALUE,
            )  # fmt: skip
            comes_back = rng.random() < 0.5
        if comes_back:
            serial += 1
            at = entered + dt.timedelta(days=rng.randint(2, 25), hours=rng.randint(0, 8))
            services.order_earn(
                member=member,
                store=member.home_store,
                number=f"{store_prefix(member.home_store.code)}-WB-{serial:05d}",
                amount=Decimal(rng.randint(120, 260)),
                occurred_at=at,
                now=now,
            )
    services.lots_release_matured(now=now)
    run.counts["journey_entries"] = JourneyRun.objects.filter(journey=journey).count()
