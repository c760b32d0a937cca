from django.urls import path

from . import programme, provenance, views
from .auth import CODE_CHECKS_PER_IP, CODE_SENDS_PER_IP, posts_limited_per_address

app_name = "center"

urlpatterns = [
    path("", views.home, name="home"),
    # Each POST of the phone form texts a code; the code form checks one.
    path("sign-in/", posts_limited_per_address("code-sends", CODE_SENDS_PER_IP)(views.sign_in), name="sign_in"),
    path(
        "sign-in/code/",
        posts_limited_per_address("code-checks", CODE_CHECKS_PER_IP)(views.sign_in_code),
        name="sign_in_code",
    ),
    path("sign-in/password/", views.sign_in_password, name="sign_in_password"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("check-in/", views.check_in, name="check_in"),
    path("card/", views.card, name="card"),
    path("card/code/", views.card_code, name="card_code"),
    path("invite/", views.invite, name="invite"),
    path("history/", views.history, name="history"),
    path("points/", provenance.points, name="points"),
    path("rewards/", views.rewards, name="rewards"),
    path("rewards/<int:reward_id>/redeem/", views.redeem, name="redeem"),
    path("redemptions/<int:redemption_id>/", views.redemption, name="redemption"),
    path("coupons/", views.coupons, name="coupons"),
    path("coupons/<int:coupon_id>/", views.coupon, name="coupon"),
    path("profile/", views.profile, name="profile"),
    path("profile/password/", views.password, name="password"),
    path("profile/export/", views.export, name="export"),
    path("profile/erase/", views.erase, name="erase"),
    # paid membership (docs/programme.md)
    path("plus/", programme.plus, name="plus"),
    path("plus/buy/", programme.plus_buy, name="plus_buy"),
    path("plus/trial/", programme.plus_trial, name="plus_trial"),
    path("plus/orders/<str:number>/pay/", programme.plus_pay, name="plus_pay"),
    path("plus/auto-renew/", programme.plus_auto_renew, name="plus_auto_renew"),
    path("plus/cancel/", programme.plus_cancel, name="plus_cancel"),
    path("transfers/", programme.transfers_page, name="transfers"),
    path("badges/", programme.badges_page, name="badges"),
    path("contribution/", programme.contribution_page, name="contribution"),
    path("partners/", programme.partners_page, name="partners"),
    path("partners/offers/<int:offer_id>/redeem/", programme.partner_redeem, name="partner_redeem"),
    path("transfers/give/", programme.transfer_give, name="transfer_give"),
    path("transfers/<int:transfer_id>/accept/", programme.transfer_accept, name="transfer_accept"),
    path("transfers/<int:transfer_id>/decline/", programme.transfer_decline, name="transfer_decline"),
    path("transfers/<int:transfer_id>/cancel/", programme.transfer_cancel, name="transfer_cancel"),
]
