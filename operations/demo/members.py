"""The demo's members: who they are, when they joined, the situation some of them must show."""

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from loyalty.models import Currency
from loyalty.policies import expiry_policy
from members import services as member_services
from members.models import Member
from operations import actions

from .run import HISTORY_DAYS, DemoRun
from .stores import DEMO_STORE_CODES, STORE_SHARES

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁沈"
FEMALE_GIVEN = [
    "婷", "静", "丽", "娜", "敏", "雪", "芳", "颖", "琳", "悦", "慧", "欣怡", "思琪", "雨涵", "梓涵",
    "佳怡", "晓燕", "诗雨", "可馨", "美玲", "子萱", "若曦", "梦瑶", "晨曦", "嘉欣",
]  # fmt: skip
MALE_GIVEN = [
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "鹏", "晨", "昊", "浩然", "子轩", "宇航", "俊杰",
    "志强", "建华", "文博", "嘉豪", "天佑", "明轩", "思远", "一鸣", "家乐", "博文",
]  # fmt: skip
EMAIL_HANDLES = ["lily", "tony", "xiaoyu", "chenchen", "kevin", "amy", "sunny", "echo", "leo", "mia", "jason", "coco"]
MOBILE_PREFIXES = ["130", "131", "135", "136", "137", "138", "139", "150", "151", "158", "159", "186", "188", "189"]

# Members given a role keep a situation the demo must show, whatever the random draw.
EXPIRED, EXPIRING, PENDING = "expired", "expiring", "pending"
ROLES = {0: EXPIRED, 1: EXPIRING, 2: PENDING}  # by member index modulo 20
# One member (this index) stopped coming about this many days ago and consented to WeChat
# marketing: the nightly lifecycle run finds them dormant and the win-back journey gives
# them its coupon (docs/journeys.md).
DORMANT, DORMANT_INDEX, DORMANT_DAYS_AGO = "dormant", 3, 120


@dataclass
class MemberPlan:
    index: int
    phone: str
    name: str
    gender: str
    birthday: dt.date | None
    email: str
    home_store: str
    joined_at: dt.datetime
    consents: tuple[str, ...]
    role: str = ""
    may_spend: bool = True
    frozen: bool = False
    member: Member | None = None


def role_days(run: DemoRun) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """Noons, newest first, on which earned points are long expired / expire in 3 to 28 days.

    Asked of the expiry policy in the settings, so the roles hold whatever it is (and are
    left out when it never expires).
    """
    policy = expiry_policy(Currency.POINTS)
    expired, expiring = [], []
    for days_back in range(1, HISTORY_DAYS - 2):
        noon = (run.end - dt.timedelta(days=days_back)).replace(hour=12, minute=0, second=0)
        expires = policy.expires_at(noon)
        if expires is None:
            continue
        if expires < run.end - dt.timedelta(days=30):
            expired.append(noon)
        elif run.end + dt.timedelta(days=3) < expires < run.end + dt.timedelta(days=28):
            expiring.append(noon)
    return expired, expiring


def member_plan(run: DemoRun, index: int, taken_phones: set[str]) -> MemberPlan:
    rng = run.rng
    phone = ""
    while not phone or phone in taken_phones:
        phone = "+86" + rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
    taken_phones.add(phone)
    gender = rng.choices([Member.Gender.FEMALE, Member.Gender.MALE, Member.Gender.UNKNOWN], [60, 35, 5])[0]
    given = {Member.Gender.FEMALE: FEMALE_GIVEN, Member.Gender.MALE: MALE_GIVEN}.get(gender)
    given = given or rng.choice([MALE_GIVEN, FEMALE_GIVEN])
    birthday = None
    if rng.random() < 0.85:
        birthday = dt.date(rng.randint(1968, 2004), 1, 1) + dt.timedelta(days=rng.randrange(365))
    email = f"{rng.choice(EMAIL_HANDLES)}{rng.randint(1, 999)}@example.com" if rng.random() < 0.4 else ""
    consents = tuple(
        channel
        for channel, chance in (("sms", 0.35), ("wechat", 0.45), ("email", 0.5 if email else 0))
        if rng.random() < chance
    )
    home = rng.choices(DEMO_STORE_CODES, STORE_SHARES)[0]
    # More members joined early on: the programme was busiest at launch.
    span = (run.end - dt.timedelta(days=3)) - run.start
    return MemberPlan(
        index=index,
        phone=phone,
        name=rng.choice(SURNAMES) + rng.choice(given),
        gender=gender,
        birthday=birthday,
        email=email,
        home_store=home,
        joined_at=run.shop_time(run.start + span * rng.random() ** 1.4),
        consents=consents,
        role=ROLES.get(index % 20, ""),
    )


def member_join(run: DemoRun, plan: MemberPlan) -> None:
    plan.member = actions.member_create(
        phone=plan.phone,
        name=plan.name,
        gender=plan.gender,
        birthday=plan.birthday,
        email=plan.email,
        home_store=run.stores[plan.home_store],
        joined_at=plan.joined_at,
        consents=plan.consents,
        source="api",
    )
    run.counts["members"] += 1
    if run.counts["members"] % 50 == 0:
        run.out.write(
            f"  {run.counts['members']} members, {run.counts['orders']} orders "
            f"(history at {timezone.localtime(plan.joined_at):%Y-%m-%d})"
        )


def member_freeze_action(plan: MemberPlan):
    def run(at: dt.datetime) -> None:
        member_services.member_set_status(member=plan.member, status=Member.Status.FROZEN)

    return run
