"""Plan and badge names per language (django-modeltranslation; see loyalty/translation.py)."""

from modeltranslation.translator import TranslationOptions, register

from .models import Badge, Plan


@register(Plan)
class PlanTranslation(TranslationOptions):
    fields = ("name", "description")


@register(Badge)
class BadgeTranslation(TranslationOptions):
    fields = ("name", "description")
