"""WeChat subscription messages, email, in-app, and the routing rules: consent, quiet
hours, the daily cap."""

import datetime as dt
import json
import threading

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from loyalty.tests.factories import MemberFactory
from members.models import Notification
from members.notifications import Notice, notices_enqueue, notifications_send_pending, notify
from outreach.models import Delivery, WechatSubscription
from outreach.providers import wechat
from outreach.selectors import delivery_counts
from outreach.services import deliveries_send_due, wechat_subscriptions_record

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 5, 4, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
TEMPLATE = {
    "template_id": "tpl-expiry",
    "page": "pages/points/index",
    "fields": {"thing1": "title", "number2": "params.points", "date3": "params.date", "thing4": "body"},
}


def expiry(member, key="e1", now=NOON):
    return notify(
        member_id=member.pk,
        kind=Notification.Kind.EXPIRY_WARNING,
        title="Your points expire soon",
        body="%(points)s points expire on %(date)s. Use them in the mall before then.",
        params={"points": 80, "date": "2026-06-01"},
        dedupe_key=key,
        now=now,
    )


def offer(member, key, now=NOON):
    notice = Notice(member_id=member.pk, kind="other", title="20% off this weekend", body="Show this.", dedupe_key=key)
    return notices_enqueue([notice], now=now, marketing=True)


def routed():
    return list(Delivery.objects.order_by("id").values_list("channel", "status"))


@pytest.fixture
def subscribed(settings):
    settings.OUTREACH_WECHAT_TEMPLATES = {"expiry_warning": TEMPLATE, "other": {**TEMPLATE, "template_id": "tpl-offer"}}
    member = MemberFactory(wechat_openid="o-openid-1", email="ann@example.com")
    wechat_subscriptions_record(member=member, results={"tpl-expiry": "accept", "tpl-offer": "accept"})
    return member


def test_a_wechat_message_fills_the_template_and_uses_up_the_subscription(settings, wechat_api, subscribed):
    expiry(subscribed)
    notifications_send_pending(now=NOON)
    assert routed() == [("wechat", "sent")]
    sent = json.loads(wechat_api.requests[-1]["body"])
    assert sent["touser"] == "o-openid-1" and sent["template_id"] == "tpl-expiry"
    assert sent["data"]["number2"] == {"value": "80"} and sent["data"]["date3"] == {"value": "2026-06-01"}
    assert len(sent["data"]["thing4"]["value"]) == 20  # WeChat's limit for a thing value
    assert WechatSubscription.objects.get(template_id="tpl-expiry").remaining == 0
    # Used up: the next notice of the kind goes by the next channel.
    expiry(subscribed, key="e2")
    notifications_send_pending(now=NOON)
    assert routed()[-1] == ("sms", "sent")


def test_the_access_token_is_fetched_once_and_shared(settings, wechat_api, subscribed):
    wechat_subscriptions_record(member=subscribed, results={"tpl-expiry": "accept"})
    errors = []

    def fetch():
        try:
            assert wechat.access_token() == "token-1"
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and wechat_api.tokens == 1
    assert cache.get(wechat.TOKEN_KEY) == "token-1"


def test_an_invalidated_token_is_fetched_again_and_the_message_still_goes(settings, wechat_api, subscribed):
    cache.set(wechat.TOKEN_KEY, "stale-token")
    expiry(subscribed)
    notifications_send_pending(now=NOON)
    assert routed() == [("wechat", "sent")]
    assert cache.get(wechat.TOKEN_KEY) == "token-1"


def test_a_refused_subscription_falls_back_without_retry(settings, wechat_api, subscribed):
    wechat_api.fail_with = [43101]
    settings.OUTREACH_ROUTES = {"expiry_warning": ["wechat", "email"]}
    expiry(subscribed)
    notifications_send_pending(now=NOON)
    assert routed() == [("wechat", "failed"), ("email", "sent")]
    (email,) = mail.outbox
    assert email.to == ["ann@example.com"] and email.subject == "Your points expire soon"
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html" and "80 points expire on 2026-06-01" in html
    assert "80 points expire" in email.body


def test_a_member_who_refused_the_template_is_not_sent_wechat(settings, wechat_api, subscribed):
    wechat_subscriptions_record(member=subscribed, results={"tpl-expiry": "reject"})
    expiry(subscribed)
    notifications_send_pending(now=NOON)
    assert routed() == [("sms", "sent")]
    assert wechat_api.requests == []


def test_marketing_goes_only_where_the_member_consented(settings):
    no_consent = MemberFactory(email="a@example.com")
    email_only = MemberFactory(email="b@example.com", email_consent_at=timezone.now())
    assert offer(no_consent, "o1") == 0  # no marketing consent at all: not even written
    assert offer(email_only, "o2") == 1
    notifications_send_pending(now=NOON)
    assert routed() == [("email", "sent")]
    assert Notification.objects.get().data["marketing"] is True


def test_service_notices_need_no_marketing_consent():
    expiry(MemberFactory())
    notifications_send_pending(now=NOON)
    assert routed() == [("sms", "sent")]


def test_marketing_waits_out_the_quiet_hours(settings):
    settings.OUTREACH_QUIET_HOURS = "21:00-09:00"
    member = MemberFactory(sms_consent_at=timezone.now())
    late = dt.datetime(2026, 5, 4, 14, 30, tzinfo=dt.UTC)  # 22:30 in Shanghai
    offer(member, "o1", now=late)
    expiry(member, now=late)  # a service notice is not held
    notifications_send_pending(now=late)
    held = Delivery.objects.get(kind="other")
    assert held.status == "queued"
    assert timezone.localtime(held.next_attempt_at).strftime("%m-%d %H:%M") == "05-05 09:00"
    assert Delivery.objects.get(kind="expiry_warning").status == "sent"
    assert deliveries_send_due(now=late + dt.timedelta(hours=10))["attempted"] == 0
    assert deliveries_send_due(now=late + dt.timedelta(hours=10, minutes=31))["sent"] == 1


def test_the_daily_cap_holds_marketing_to_in_app(settings):
    settings.OUTREACH_DAILY_CAP = 2
    member = MemberFactory(sms_consent_at=timezone.now())
    expiry(member)
    for n in range(3):
        offer(member, f"o{n}")
    notifications_send_pending(now=NOON)
    assert routed() == [("sms", "sent"), ("sms", "sent"), ("inapp", "delivered"), ("inapp", "delivered")]
    assert Delivery.objects.filter(reason="daily_cap").count() == 2
    # Service notices go out whatever the count.
    expiry(member, key="e2")
    notifications_send_pending(now=NOON)
    assert routed()[-1] == ("sms", "sent")
    # A new day, a new count.
    offer(member, "tomorrow", now=NOON + dt.timedelta(days=1))
    notifications_send_pending(now=NOON + dt.timedelta(days=1))
    assert routed()[-1] == ("sms", "sent")


def test_in_app_is_the_last_resort():
    member = MemberFactory(phone="+8613900000000")
    notify(member_id=member.pk, kind="tier_up", title="Welcome to Gold", dedupe_key="t1", now=NOON)
    notifications_send_pending(now=NOON)
    assert routed() == [("inapp", "delivered")]  # tier notices: WeChat or email; neither here


def test_delivery_counts_by_channel_and_status(django_assert_max_num_queries):
    expiry(MemberFactory())
    expiry(MemberFactory(), key="e2")
    notify(member_id=MemberFactory().pk, kind="tier_up", title="t", dedupe_key="t1", now=NOON)
    notifications_send_pending(now=NOON)
    with django_assert_max_num_queries(1):
        counts = delivery_counts(since=NOON - dt.timedelta(days=1))
    assert counts == {"sms": {"sent": 2}, "inapp": {"delivered": 1}}


def test_a_delivery_left_sending_by_a_killed_worker_is_failed_not_resent():
    expiry(MemberFactory())
    notifications_send_pending(now=NOON)
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", next_attempt_at=NOON)
    deliveries_send_due(now=NOON + dt.timedelta(minutes=11))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "interrupted")


def test_a_malformed_route_setting_names_the_variable():
    from config.tests.test_settings import run_manage

    result = run_manage("check", OUTREACH_ROUTES="{not json")
    assert result.returncode != 0 and "OUTREACH_ROUTES must be a JSON object" in result.stderr


def test_the_access_token_is_shared_by_processes_through_redis(settings, wechat_api):
    """Four forked processes (web and worker processes would each be one) ask at once:
    WeChat is asked for one token, and every process gets it from Redis."""
    import os

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
            "KEY_PREFIX": f"outreach-test-{os.getpid()}",
        }
    }
    cache.delete_many([wechat.TOKEN_KEY, wechat.LOCK_KEY])
    from django.core.cache import caches

    caches.close_all()  # no connection for the children to inherit
    children = []
    for _n in range(4):
        pid = os.fork()
        if pid == 0:  # the child: fetch, report through the exit status, never return to pytest
            try:
                os._exit(0 if wechat.access_token() == "token-1" else 1)
            except BaseException:  # noqa: BLE001
                os._exit(2)
        children.append(pid)
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert statuses == [0, 0, 0, 0]
    assert wechat_api.tokens == 1
    assert cache.get(wechat.TOKEN_KEY) == "token-1"  # in Redis, for the next process too
    cache.delete_many([wechat.TOKEN_KEY, wechat.LOCK_KEY])
