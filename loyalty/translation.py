"""What members read about tiers, benefits and earning rules, stored per language.

django-modeltranslation adds ``<field>_en`` and ``<field>_zh_hans`` beside each field
named here (migration 0010); ``tier.name`` reads the active language's text, falling back
to the other language's when it is empty (``MODELTRANSLATION_FALLBACK_LANGUAGES``).
"""

from modeltranslation.translator import TranslationOptions, register

from .models import Benefit, EarnRule, Tier


@register(Tier)
class TierTranslation(TranslationOptions):
    fields = ("name", "description")


@register(Benefit)
class BenefitTranslation(TranslationOptions):
    fields = ("title", "description")


@register(EarnRule)
class EarnRuleTranslation(TranslationOptions):
    fields = ("name",)
