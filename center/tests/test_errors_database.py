"""The database unreachable: member pages and the admin show a friendly 503 page, in the member's language."""

import pytest
from django.test import Client

from api.tests.test_errors_database import database_down, with_eager_user

pytestmark = pytest.mark.django_db(transaction=True)


def assert_friendly_page(response, *texts):
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    html = response.content.decode()
    for text in texts:
        assert text in html, text
    assert "Server Error" not in html and "Traceback" not in html


@pytest.mark.parametrize("path", ["/me/", "/me/history/", "/me/rewards/", "/me/profile/"])
def test_member_pages_show_a_friendly_page_when_the_database_is_down(member_client, path):
    with database_down():
        response = member_client.get(path)
    assert_friendly_page(response, "Briefly unavailable", "try again", f'href="{path}"')


def test_the_friendly_page_speaks_chinese_to_a_chinese_member(member_client):
    with database_down():
        by_header = member_client.get("/me/history/", HTTP_ACCEPT_LANGUAGE="zh-hans")
        member_client.cookies["django_language"] = "zh-hans"
        by_cookie = member_client.get("/me/")
    for response in (by_header, by_cookie):
        assert_friendly_page(response, "暂时无法使用", 'lang="zh-hans"')


def test_a_posted_form_gets_the_friendly_page_too(member_client):
    with database_down():
        response = member_client.post("/me/check-in/")
    assert_friendly_page(response, "Briefly unavailable")


def test_the_admin_shows_the_friendly_page(admin_client):
    with database_down():
        response = admin_client.get("/admin/")
    assert_friendly_page(response, "Briefly unavailable")


def test_a_database_error_in_a_middleware_shows_the_friendly_page(settings, member_client):
    settings.MIDDLEWARE = with_eager_user(settings.MIDDLEWARE)
    client = Client(raise_request_exception=False)
    client.cookies = member_client.cookies
    with database_down():
        response = client.get("/me/")
    assert_friendly_page(response, "Briefly unavailable")
