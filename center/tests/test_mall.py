"""The rewards mall's shelves, order and "I can afford" filter; coupon headlines; the card page."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from center.templatetags.center import coupon_headline
from center.tests.data import award
from rewards.models import Coupon, Reward

pytestmark = pytest.mark.django_db

URL = reverse("center:rewards")


@pytest.fixture
def mall(member):
    award(member, 1000)
    return {
        "latte": Reward.objects.create(name="Latte", points_cost=300, category="food_drink", sort_order=1),
        "fifty": Reward.objects.create(
            name="50 off", points_cost=5000, category="vouchers", coupon_kind="amount_off", coupon_value=50
        ),
        "ten": Reward.objects.create(name="10 off", points_cost=800, category="vouchers", sort_order=3),
        "tote": Reward.objects.create(name="Tote", points_cost=1200, sort_order=4),
    }


def _names(response) -> list[str]:
    return [offer.reward.name for offer in response.context["offers"]]


def test_a_shelf_shows_its_rewards_only(member_client, mall):
    response = member_client.get(URL, {"category": "vouchers"})
    assert sorted(_names(response)) == ["10 off", "50 off"]
    page = response.content.decode()
    assert 'aria-current="page">Vouchers</a>' in page
    assert ">Food and drink</a>" in page and ">Beauty</a>" not in page  # only shelves with rewards


def test_sort_by_cost_both_ways(member_client, mall):
    assert _names(member_client.get(URL, {"sort": "cost"})) == ["Latte", "10 off", "Tote", "50 off"]
    assert _names(member_client.get(URL, {"sort": "-cost"})) == ["50 off", "Tote", "10 off", "Latte"]


def test_i_can_afford_hides_what_costs_more_than_the_balance(member_client, mall):
    assert sorted(_names(member_client.get(URL, {"afford": "on"}))) == ["10 off", "Latte"]


def test_nothing_affordable_says_the_lowest_price_and_links_to_earning(member_client, member, mall):
    Reward.objects.filter(points_cost__lt=2000).update(points_cost=2000)
    page = member_client.get(URL, {"afford": "on"}).content.decode()
    assert "the lowest price in the mall is 2,000 points" in page
    assert f'href="{reverse("center:card")}"' in page


def test_a_bad_filter_value_shows_the_whole_mall(member_client, mall):
    response = member_client.get(URL, {"category": "weapons", "sort": "random"})
    assert response.status_code == 200 and len(_names(response)) == 4


def test_coupon_headlines_say_what_the_coupon_gives(member):
    def coupon(kind, value, title="Latte voucher"):
        return Coupon(member=member, kind=kind, value=Decimal(value), title=title, expires_at=timezone.now())

    assert coupon_headline(coupon("amount_off", "50.00")) == "¥50 off"
    assert coupon_headline(coupon("discount_percent", "10.00")) == "10% off"
    assert coupon_headline(coupon("gift", "0")) == "Latte voucher"
    with translation.override("zh-hans"):
        assert coupon_headline(coupon("discount_percent", "15.00")) == "8.5 折"
        assert coupon_headline(coupon("amount_off", "50.00")) == "立减 ¥50"


def test_the_coupon_page_offers_real_full_screen(member_client, member):
    found = Coupon.objects.create(
        member=member, kind="gift", title="Cake", source="staff", expires_at=timezone.now() + dt.timedelta(days=3)
    )
    page = member_client.get(reverse("center:coupon", args=[found.pk])).content.decode()
    assert 'data-fullscreen="#coupon-single"' in page and 'id="coupon-single"' in page


def test_the_card_page_shows_qr_barcode_and_a_fresh_code(member_client, member):
    response = member_client.get(reverse("center:card"))
    page = response.content.decode()
    assert 'class="qr"' in page and 'class="barcode"' in page
    code = response.context["card"]["code"]
    assert code.startswith(member.member_number) and len(code) == 20
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    fresh = member_client.get(reverse("center:card_code")).json()
    assert fresh["code"][:10] == member.member_number
    assert fresh["qr"].startswith('<div class="qr"') and "<svg" in fresh["barcode"]
    assert 1 <= fresh["refresh_in"] <= 31


def test_the_card_code_needs_a_signed_in_member(client):
    response = client.get(reverse("center:card_code"))
    assert response.status_code == 302 and "/me/sign-in/" in response.url


def test_favicon_is_served_at_the_root_and_linked(client, member_client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert (
        '<link rel="icon" href="/favicon.ico" sizes="any">'
        in member_client.get(reverse("center:home")).content.decode()
    )


def test_the_demo_rewards_get_our_pictures_and_shelves(settings, tmp_path):
    from operations.demo.images import FOLDER, demo_reward_images

    settings.MEDIA_ROOT = tmp_path
    demo = Reward.objects.create(name="Coffee", points_cost=500, image="rewards/demo-coffee.png")
    own = Reward.objects.create(name="Staff's", points_cost=500, image="rewards/staff-upload.png")
    assert demo_reward_images() == 1
    demo.refresh_from_db()
    own.refresh_from_db()
    assert demo.image.name == "rewards/center-coffee.png" and demo.category == "food_drink"
    assert (tmp_path / "rewards" / "center-coffee.png").read_bytes() == (FOLDER / "coffee.png").read_bytes()
    assert own.image.name == "rewards/staff-upload.png" and own.category == ""
    assert demo_reward_images() == 0  # already done: nothing changes the second time
