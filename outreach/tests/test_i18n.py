"""The new apps' catalogues (outreach, webhooks, bulk): complete, compiled, in use."""

from pathlib import Path

import pytest
from django.utils import translation

from bulk.models import BulkJob
from outreach.models import Delivery
from webhooks.models import Endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("app", ["outreach", "webhooks", "bulk"])
def test_the_catalogue_is_complete_and_compiled(app):
    folder = ROOT / app / "locale/zh_Hans/LC_MESSAGES"
    po = (folder / "django.po").read_text(encoding="utf-8")
    entries = po.split("\n\n")[1:]
    assert [e for e in entries if e.rstrip().endswith(('msgstr ""', 'msgstr[0] ""'))] == []
    assert "#, fuzzy" not in po
    assert (folder / "django.mo").stat().st_size > 0


def test_the_apps_speak_chinese():
    with translation.override("zh-hans"):
        assert str(Delivery._meta.verbose_name) == "投递"
        assert str(Endpoint._meta.verbose_name) == "Webhook 端点"
        assert str(BulkJob.Status.PREVIEW.label) == "待确认"
