"""Both languages work: the message catalogue is compiled and complete."""

import pytest
from django.urls import reverse
from django.utils import translation

from core.errors import LoyaltyError
from members.phone import normalize_phone


@pytest.mark.parametrize(
    ("language", "expected"), [("en", "is not a valid phone number"), ("zh-hans", "不是有效的手机号")]
)
def test_refusals_speak_the_request_language(language, expected):
    with translation.override(language), pytest.raises(LoyaltyError) as error:
        normalize_phone("123")
    assert expected in str(error.value.message)


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "expected"), [("en", "Adjust points"), ("zh-hans", "调整积分")])
def test_admin_member_list_in_both_languages(admin_client, language, expected):
    response = admin_client.get(reverse("admin:members_member_changelist"), headers={"accept-language": language})
    assert response.status_code == 200
    assert expected in response.content.decode()


def test_catalogue_has_no_untranslated_or_fuzzy_entries():
    from pathlib import Path

    po = (Path(__file__).resolve().parents[2] / "locale/zh_Hans/LC_MESSAGES/django.po").read_text(encoding="utf-8")
    entries = po.split("\n\n")[1:]  # the first block is the header
    untranslated = [e for e in entries if e.rstrip().endswith(('msgstr ""', 'msgstr[0] ""'))]
    assert untranslated == []
    assert "#, fuzzy" not in po
