"""Shared fixtures. Factories live in tests/factories.py of each app."""

import pytest


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("clerk", password="not-a-real-password-42", is_staff=True)


@pytest.fixture(autouse=True)
def english_by_default(settings):
    """Tests read messages in English unless they ask for another language (see test_i18n)."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield
