"""Reward and coupon texts per language (django-modeltranslation; see loyalty/translation.py).

A coupon copies its reward's (or benefit's) texts in both languages when it is issued, so
a member reads their coupon in their language even after the reward changes.
"""

from modeltranslation.translator import TranslationOptions, register

from .models import Coupon, Reward


@register(Reward)
class RewardTranslation(TranslationOptions):
    fields = ("name", "description")


@register(Coupon)
class CouponTranslation(TranslationOptions):
    fields = ("title", "description")
