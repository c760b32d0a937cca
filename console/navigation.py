"""The admin's sidebar, grouped by task, and the staff roles' names and landing pages.

``UNFOLD["SIDEBAR"]["navigation"]`` (config/settings.py) points at ``sidebar``: unfold calls
it per request, so each user sees only the groups and links their permissions open, and the
labels come out in the request's language. A model admin registered by a new app shows up
under "All applications" until it is given a place here.
"""

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER, sees_everything


@dataclass(frozen=True)
class Link:
    title: str
    url_name: str
    icon: str
    perm: str  # "app.codename"; "" for any staff user


def _model(app: str, model: str, title: str, icon: str) -> Link:
    return Link(title, f"admin:{app}_{model}_changelist", icon, f"{app}.view_{model}")


def _groups() -> list[tuple[str, list[Link]]]:
    """The task groups in the order staff use them; titles in the request's language."""
    return [
        (
            _("Members"),
            [
                _model("members", "member", _("Members"), "person_search"),
                _model("members", "segment", _("Segments"), "groups"),
                _model("members", "tag", _("Tags"), "sell"),
                _model("members", "importjob", _("Imports"), "upload_file"),
                _model("members", "membermerge", _("Member merges"), "merge"),
                _model("members", "consentrecord", _("Consent records"), "verified_user"),
            ],
        ),
        (
            pgettext("sidebar group", "Till"),
            [
                Link(pgettext("sidebar link", "Till"), "loyalty_till", "point_of_sale", "loyalty.use_till"),
                _model("loyalty", "order", _("Orders"), "receipt_long"),
            ],
        ),
        (
            _("Points and tiers"),
            [
                _model("loyalty", "ledgerentry", _("Ledger entries"), "list_alt"),
                _model("loyalty", "account", _("Accounts"), "account_balance_wallet"),
                _model("loyalty", "lot", _("Lots"), "inventory_2"),
                _model("loyalty", "allocation", _("Allocations"), "call_split"),
                _model("loyalty", "tier", _("Tiers"), "workspace_premium"),
                _model("loyalty", "membertier", _("Member tiers"), "badge"),
                _model("loyalty", "tierchange", _("Tier changes"), "trending_up"),
                _model("loyalty", "earnrule", _("Earning rules"), "rule"),
            ],
        ),
        (
            _("Rewards and coupons"),
            [
                _model("rewards", "reward", _("Rewards"), "redeem"),
                _model("rewards", "redemption", _("Redemptions"), "shopping_bag"),
                _model("rewards", "coupon", _("Coupons"), "confirmation_number"),
            ],
        ),
        (
            _("Paid membership"),
            [
                _model("programme", "plan", _("Plans"), "card_membership"),
                _model("programme", "membership", _("Memberships"), "loyalty"),
                _model("programme", "planorder", _("Plan orders"), "payments"),
                _model("programme", "transfer", _("Transfers"), "swap_horiz"),
                _model("programme", "badge", _("Badges"), "military_tech"),
                _model("programme", "memberbadge", _("Member badges"), "emoji_events"),
                _model("programme", "fanlevel", _("Fan levels"), "stars"),
                _model("programme", "contribution", _("Contributions"), "volunteer_activism"),
            ],
        ),
        (
            _("Operations"),
            [
                Link(_("Operations dashboard"), "loyalty_dashboard", "monitoring", "loyalty.view_dashboard"),
                Link(_("FAST panel"), "loyalty_fast", "insights", "loyalty.view_dashboard"),
                _model("bulk", "bulkjob", _("Bulk jobs"), "dynamic_feed"),
                _model("outreach", "delivery", _("Deliveries"), "outgoing_mail"),
                _model("outreach", "wechatsubscription", _("WeChat subscriptions"), "mark_chat_read"),
                _model("engagement", "journey", _("Journeys"), "route"),
                _model("engagement", "journeyrun", _("Journey runs"), "play_circle"),
                _model("engagement", "checkin", _("Check-ins"), "event_available"),
                _model("engagement", "referral", _("Referrals"), "share"),
                _model("members", "stagechange", _("Stage changes"), "timeline"),
                _model("members", "staffaction", _("Staff actions"), "history"),
                _model("django_celery_beat", "periodictask", _("Scheduled jobs"), "schedule"),
            ],
        ),
        (
            _("Settings"),
            [
                Link(_("Programme settings"), "loyalty_programme_settings", "tune", "loyalty.view_tier"),
                _model("members", "store", _("Stores"), "storefront"),
                _model("api", "storeapikey", _("Store API keys"), "key"),
                _model("webhooks", "endpoint", _("Webhook endpoints"), "webhook"),
                _model("webhooks", "event", _("Webhook events"), "bolt"),
                _model("webhooks", "webhookdelivery", _("Webhook deliveries"), "send"),
                _model("api", "apitoken", _("API tokens"), "token"),
                _model("auth", "user", _("Users"), "manage_accounts"),
                _model("auth", "group", _("Roles (groups)"), "shield_person"),
                _model("otp_totp", "totpdevice", _("Authenticators"), "phonelink_lock"),
                _model("axes", "accessattempt", _("Locked sign-ins"), "lock_clock"),
                Link(_("Two-factor sign-in"), "admin:two_factor_setup", "security", ""),
            ],
        ),
    ]


def sidebar(request) -> list[dict]:
    """Unfold's navigation: the task groups, each with the links ``request.user`` may open."""
    user = request.user
    groups = []
    for title, links in _groups():
        items = []
        for link in links:
            if link.perm and not user.has_perm(link.perm):
                continue
            try:
                url = reverse(link.url_name)
            except NoReverseMatch:  # an app that is not installed here
                continue
            items.append({"title": link.title, "icon": link.icon, "link": url})
        if items:
            groups.append({"title": title, "separator": True, "collapsible": False, "items": items})
    return groups


def role_name(user) -> str:
    """The user's role as staff call it, in the request's language."""
    if user.is_superuser:
        return _("Superuser")
    names = set(user.groups.values_list("name", flat=True))
    if BRAND_ADMIN in names:
        return _("Brand admin")
    if STORE_MANAGER in names:
        return _("Store manager")
    if CLERK in names:
        return _("Clerk")
    return _("Staff")


def landing_url(user) -> str | None:
    """Where ``user`` starts their day: None for the admin index (brand admins, superusers).

    A clerk (who may use the till but not see the dashboard) lands on the till, a store
    manager on their stores' dashboard. A brand admin's index is the dashboard summary with
    the "needs attention" list.
    """
    if sees_everything(user):
        return None
    if user.has_perm("loyalty.view_dashboard"):
        return reverse("loyalty_dashboard")
    if user.has_perm("loyalty.use_till"):
        return reverse("loyalty_till")
    return None


def subheader(request) -> str:
    """Under the site's name in the sidebar: the signed-in user's role."""
    user = request.user
    return role_name(user) if user.is_authenticated else ""


def account_links(request) -> list[dict]:
    """The user menu's extra links (unfold adds password change and sign-out)."""
    return [{"title": _("Two-factor sign-in"), "link": reverse("admin:two_factor_setup")}]
