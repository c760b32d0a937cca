from django.urls import path

from .views import (
    auth,
    badges,
    bulk,
    engagement,
    me,
    merge,
    metrics,
    outreach,
    pos,
    programme,
    provenance,
    rewards,
    transfers,
    webhooks,
)
from .views import partners as partner_views

app_name = "api"

urlpatterns = [
    # sign-in
    path("auth/otp/", auth.OtpSendView.as_view(), name="otp-send"),
    path("auth/otp/sign-in/", auth.OtpSignInView.as_view(), name="otp-sign-in"),
    path("auth/miniprogram/", auth.MiniProgramSignInView.as_view(), name="miniprogram-sign-in"),
    path("auth/refresh/", auth.RefreshView.as_view(), name="refresh"),
    path("auth/sign-out/", auth.SignOutView.as_view(), name="sign-out"),
    path("auth/staff-token/", auth.StaffTokenView.as_view(), name="staff-token"),
    # the signed-in member
    path("me/", me.ProfileView.as_view(), name="me"),
    path("me/balances/", me.BalancesView.as_view(), name="me-balances"),
    path("me/expiry-calendar/", me.ExpiryCalendarView.as_view(), name="me-expiry-calendar"),
    path("me/entries/", me.EntriesView.as_view(), name="me-entries"),
    path("me/tier/", me.TierView.as_view(), name="me-tier"),
    path("me/benefits/", me.BenefitsView.as_view(), name="me-benefits"),
    path("me/notifications/", me.NotificationsView.as_view(), name="me-notifications"),
    path("me/notifications/<int:pk>/read/", me.NotificationReadView.as_view(), name="me-notification-read"),
    path("me/coupons/", me.CouponsView.as_view(), name="me-coupons"),
    path("me/checkout-quote/", me.CheckoutQuoteView.as_view(), name="me-checkout-quote"),
    path("me/check-in/", engagement.CheckInView.as_view(), name="me-check-in"),
    path("me/referral/", engagement.ReferralView.as_view(), name="me-referral"),
    path("me/export/", me.ExportView.as_view(), name="me-export"),
    path("me/erase/", me.EraseView.as_view(), name="me-erase"),
    # the points mall
    path("rewards/", rewards.RewardsView.as_view(), name="rewards"),
    path("rewards/<int:pk>/redeem/", rewards.RedeemView.as_view(), name="reward-redeem"),
    path("me/redemptions/", rewards.RedemptionsView.as_view(), name="me-redemptions"),
    path("me/redemptions/<int:pk>/cancel/", rewards.CancelRedemptionView.as_view(), name="me-redemption-cancel"),
    # staff and tills
    path("pos/members/lookup/", pos.LookupView.as_view(), name="pos-lookup"),
    path("pos/orders/", pos.OrderEarnView.as_view(), name="pos-orders"),
    path("pos/refunds/", pos.RefundView.as_view(), name="pos-refunds"),
    path("pos/adjustments/", pos.AdjustView.as_view(), name="pos-adjustments"),
    path("pos/coupons/verify/", pos.VerifyCouponView.as_view(), name="pos-coupon-verify"),
    path("pos/checkout/quote/", pos.CheckoutQuoteView.as_view(), name="pos-checkout-quote"),
    path("pos/checkout/", pos.CheckoutView.as_view(), name="pos-checkout"),
    # member merge (docs/merge.md)
    path("staff/members/merge/", merge.MergeView.as_view(), name="staff-member-merge"),
    path("staff/members/merge/<int:pk>/undo/", merge.MergeUndoView.as_view(), name="staff-member-merge-undo"),
    # staff figures (docs/segments.md)
    path("metrics/", metrics.MetricsView.as_view(), name="metrics"),
    path("segments/", metrics.SegmentsView.as_view(), name="segments"),
    # paid membership (docs/programme.md)
    path("programme/plans/", programme.PlansView.as_view(), name="programme-plans"),
    path("programme/payments/<slug:adapter>/notify/", programme.PaymentNotifyView.as_view(), name="programme-notify"),
    path("programme/orders/<str:number>/refund/", programme.RefundView.as_view(), name="programme-refund"),
    path("programme/dashboard/", programme.DashboardView.as_view(), name="programme-dashboard"),
    path("me/membership/", programme.MyMembershipView.as_view(), name="me-membership"),
    path("me/membership/orders/", programme.MyPlanOrdersView.as_view(), name="me-membership-orders"),
    path("me/membership/trial/", programme.TrialView.as_view(), name="me-membership-trial"),
    path("me/membership/cancel/", programme.CancelView.as_view(), name="me-membership-cancel"),
    path("me/membership/auto-renew/", programme.AutoRenewView.as_view(), name="me-membership-auto-renew"),
    path("me/transfers/", transfers.MyTransfersView.as_view(), name="me-transfers"),
    path("me/transfers/<int:pk>/accept/", transfers.TransferAcceptView.as_view(), name="me-transfer-accept"),
    path("me/transfers/<int:pk>/decline/", transfers.TransferDeclineView.as_view(), name="me-transfer-decline"),
    path("me/transfers/<int:pk>/cancel/", transfers.TransferCancelView.as_view(), name="me-transfer-cancel"),
    path("programme/transfers/", transfers.StaffTransfersView.as_view(), name="programme-transfers"),
    path("me/badges/", badges.MyBadgesView.as_view(), name="me-badges"),
    # partners (docs/programme.md)
    path("partner/orders/", partner_views.PartnerEarnView.as_view(), name="partner-orders"),
    path("partner/vouchers/use/", partner_views.PartnerVoucherUseView.as_view(), name="partner-voucher-use"),
    path("partner/offers/<int:pk>/codes/", partner_views.PartnerCodesView.as_view(), name="partner-offer-codes"),
    path("partner/members/benefits/", partner_views.PartnerMemberBenefitsView.as_view(), name="partner-benefits"),
    path("partner/settlement/", partner_views.PartnerSettlementView.as_view(), name="partner-settlement"),
    path("partners/offers/", partner_views.OffersView.as_view(), name="partner-offers"),
    path("me/partner-vouchers/", partner_views.MyPartnerVouchersView.as_view(), name="me-partner-vouchers"),
    path("me/partner-benefits/", partner_views.MyPartnerBenefitsView.as_view(), name="me-partner-benefits"),
    path(
        "programme/partners/<str:code>/settlement/",
        partner_views.StaffSettlementView.as_view(),
        name="programme-partner-settlement",
    ),
    path("me/contribution/", badges.MyContributionView.as_view(), name="me-contribution"),
    path("programme/contributions/", badges.StaffContributionView.as_view(), name="programme-contributions"),
    path("programme/badges/award/", badges.StaffBadgeAwardView.as_view(), name="programme-badge-award"),
    path("programme/badges/revoke/", badges.StaffBadgeRevokeView.as_view(), name="programme-badge-revoke"),
    path(
        "programme/transfers/<int:pk>/reverse/",
        transfers.StaffTransferReverseView.as_view(),
        name="programme-transfer-reverse",
    ),
    # channels and webhooks (docs/channels.md, docs/webhooks.md)
    path("me/wechat-subscriptions/", outreach.WechatSubscriptionsView.as_view(), name="me-wechat-subscriptions"),
    path("outreach/reports/<str:provider>/<str:token>/", outreach.SmsReportView.as_view(), name="outreach-sms-report"),
    path("webhooks/endpoints/<int:pk>/events/", webhooks.EndpointEventsView.as_view(), name="webhook-events"),
    # batch and bulk (docs/bulk.md)
    path("pos/orders/batch/", bulk.OrderBatchView.as_view(), name="pos-orders-batch"),
    path("pos/jobs/<int:pk>/", bulk.JobView.as_view(), name="pos-job"),
    path("bulk/awards/", bulk.AwardJobsView.as_view(), name="bulk-awards"),
    path("bulk/awards/<int:pk>/confirm/", bulk.AwardConfirmView.as_view(), name="bulk-award-confirm"),
    # per-point provenance (docs/foresight.md)
    path("me/points/provenance/", provenance.MyProvenanceView.as_view(), name="me-points-provenance"),
    path("members/<str:number>/provenance/", provenance.StaffProvenanceView.as_view(), name="member-points-provenance"),
]
