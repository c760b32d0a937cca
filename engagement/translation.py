"""What members read from a journey step, stored per language (as loyalty/translation.py
does for tiers): the coupon's title and the message, so a step's coupon and notice reach
each member in their language (migration 0006)."""

from modeltranslation.translator import TranslationOptions, register

from .models import JourneyStep


@register(JourneyStep)
class JourneyStepTranslation(TranslationOptions):
    fields = ("coupon_title", "message_title", "message_body")
