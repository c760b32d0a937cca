"""The demo's SMS provider (``manage.py sms_stub``): a member signs in with the code it prints."""

import json
import re
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from outreach.management.commands.sms_stub import make_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def sms_stub(settings):
    lines: list[str] = []
    server = make_server("127.0.0.1", 0, key_id="demo-id", secret="demo-secret", write=lines.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    settings.OUTREACH_ALIYUN = {
        "access_key_id": "demo-id",
        "access_key_secret": "demo-secret",
        "sign_name": "Demo",
        "endpoint": f"http://127.0.0.1:{server.server_port}/",
    }
    yield lines
    server.shutdown()
    server.server_close()


def test_a_member_signs_in_with_the_code_the_stub_prints(sms_stub):
    client = APIClient()
    assert client.post("/api/v1/auth/otp/", {"phone": "13800138000"}, format="json").status_code == 202
    [line] = sms_stub
    assert line.startswith("SMS to 13800138000 [Demo]")
    code = json.loads(re.search(r"(\{.*\})$", line).group(1))["code"]
    signed_in = client.post("/api/v1/auth/otp/sign-in/", {"phone": "13800138000", "code": code}, format="json")
    assert signed_in.status_code in (200, 201), signed_in.content


def test_a_wrong_secret_is_refused_and_the_member_told(sms_stub, settings):
    settings.OUTREACH_ALIYUN = {**settings.OUTREACH_ALIYUN, "access_key_secret": "another"}
    answer = APIClient().post("/api/v1/auth/otp/", {"phone": "13800138000"}, format="json")
    assert answer.status_code >= 400 and answer.json()["error"]["code"] == "otp_send_failed"
    assert sms_stub[0].startswith("REFUSED") and "signature" in sms_stub[0]


def test_the_stub_refuses_to_run_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="development"):
        call_command("sms_stub")
