"""Shared fixtures. Factories live in tests/factories.py of each app."""

import pytest


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("clerk", password="not-a-real-password-42", is_staff=True)
