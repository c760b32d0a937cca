"""Store names per language (django-modeltranslation; see loyalty/translation.py)."""

from modeltranslation.translator import TranslationOptions, register

from .models import Store


@register(Store)
class StoreTranslation(TranslationOptions):
    fields = ("name",)
