"""Plan, badge, fan level and partner texts per language (django-modeltranslation; see loyalty/translation.py)."""

from modeltranslation.translator import TranslationOptions, register

from .models import Badge, FanLevel, Partner, PartnerBenefit, PartnerOffer, Plan


@register(Plan)
class PlanTranslation(TranslationOptions):
    fields = ("name", "description")


@register(Badge)
class BadgeTranslation(TranslationOptions):
    fields = ("name", "description")


@register(FanLevel)
class FanLevelTranslation(TranslationOptions):
    fields = ("name", "benefits")


@register(Partner)
class PartnerTranslation(TranslationOptions):
    fields = ("name", "description")


@register(PartnerOffer)
class PartnerOfferTranslation(TranslationOptions):
    fields = ("name", "description")


@register(PartnerBenefit)
class PartnerBenefitTranslation(TranslationOptions):
    fields = ("title", "description")
