"""The four journeys shipped with the system (docs/journeys.md); operators edit or switch them off.

Written in the site's language (settings.LANGUAGE_CODE) when the catalogue has it. Running
it again adds nothing: a journey whose name exists is left as it is.
"""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import migrations
from django.utils import translation
from django.utils.translation import gettext as _

QUIET_START, QUIET_END = dt.time(21, 0), dt.time(9, 0)


def default_journeys() -> list[dict]:
    return [
        {
            "name": _("Welcome gift"),
            "description": _(
                "A 10 yuan coupon for the first visit when a member joins: a benefit of joining, not "
                "marketing. Points for joining come from the signup-bonus earning rule, if you have one."
            ),
            "trigger": "joined",
            "action": "issue_coupon",
            "coupon_title": _("Welcome: 10 yuan off"),
            "coupon_kind": "amount_off",
            "coupon_value": Decimal("10.00"),
            "coupon_valid_days": 30,
            "message_title": _("Welcome!"),
            "message_body": _("{coupon}: show code {code} at the till, valid until {date}."),
            "is_marketing": False,
            "cap_count": 1,
            "cap_days": 3650,
        },
        {
            "name": _("Second-purchase nudge"),
            "description": _("An amount-off coupon 30 days after a member's first order when no second order came."),
            "trigger": "first_order",
            "trigger_days": 30,
            "action": "issue_coupon",
            "coupon_title": _("20 yuan off your second order"),
            "coupon_kind": "amount_off",
            "coupon_value": Decimal("20.00"),
            "coupon_valid_days": 14,
            "message_title": _("A treat for your next visit"),
            "message_body": _("{coupon}: show code {code} at the till, valid until {date}."),
            "is_marketing": True,
            "cap_count": 1,
            "cap_days": 365,
            "quiet_start": QUIET_START,
            "quiet_end": QUIET_END,
        },
        {
            "name": _("Dormant win-back"),
            "description": _("A coupon when a member enters the dormant stage (no order for a long while)."),
            "trigger": "dormant",
            "action": "issue_coupon",
            "coupon_title": _("30 yuan off: we miss you"),
            "coupon_kind": "amount_off",
            "coupon_value": Decimal("30.00"),
            "coupon_valid_days": 30,
            "message_title": _("We miss you"),
            "message_body": _("It has been a while. {coupon}: show code {code} at the till, valid until {date}."),
            "is_marketing": True,
            "cap_count": 1,
            "cap_days": 180,
            "quiet_start": QUIET_START,
            "quiet_end": QUIET_END,
        },
        {
            "name": _("Expiry reminder"),
            "description": _(
                "A last reminder 7 days before points expire; the first notice, 30 days ahead, comes from "
                "the nightly expiry notices. A service message, not marketing."
            ),
            "trigger": "points_expiring",
            "trigger_days": 7,
            "action": "notify",
            "message_title": _("Your points expire in a few days"),
            "message_body": _("{points} points expire on {date}. Use them before then."),
            "is_marketing": False,
            "cap_count": 1,
            "cap_days": 7,
            "quiet_start": QUIET_START,
            "quiet_end": QUIET_END,
        },
    ]


def create(apps, schema_editor):
    Journey = apps.get_model("engagement", "Journey")
    with translation.override(settings.LANGUAGE_CODE):
        for fields in default_journeys():
            name = fields.pop("name")
            Journey.objects.get_or_create(name=name, defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("engagement", "0001_initial")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
