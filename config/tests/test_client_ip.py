"""core.client_ip: the connection's address unless a named proxy forwarded the request."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from core.client_ip import client_ip, client_rate_key, parse_address

factory = RequestFactory()


def request(remote="203.0.113.7", xff=None, **headers):
    meta = {"REMOTE_ADDR": remote, **headers}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return factory.get("/", **meta)


@pytest.fixture
def no_proxies(settings):
    settings.LOYALTY_TRUSTED_PROXIES = []
    settings.LOYALTY_TRUSTED_PROXY_COUNT = 0


@pytest.fixture
def proxies(settings):
    settings.LOYALTY_TRUSTED_PROXIES = ["10.0.0.0/8", "127.0.0.1", "fd00::/8"]
    settings.LOYALTY_TRUSTED_PROXY_COUNT = 0


def test_without_a_proxy_forwarded_headers_are_ignored(no_proxies):
    forged = request(xff="198.51.100.1", HTTP_X_REAL_IP="198.51.100.2")
    assert client_ip(forged) == "203.0.113.7"


def test_forwarded_header_from_an_untrusted_peer_is_ignored(proxies):
    assert client_ip(request(remote="203.0.113.7", xff="198.51.100.1")) == "203.0.113.7"


def test_through_a_trusted_proxy_the_forwarded_client_counts(proxies):
    assert client_ip(request(remote="10.1.2.3", xff="198.51.100.1")) == "198.51.100.1"


def test_a_header_the_client_prepended_is_not_believed(proxies):
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxy appended the real peer.
    assert client_ip(request(remote="10.1.2.3", xff="1.2.3.4, 198.51.100.1")) == "198.51.100.1"


def test_the_walk_skips_every_trusted_hop(proxies):
    xff = "1.2.3.4, 198.51.100.1, 10.9.9.9, 127.0.0.1"
    assert client_ip(request(remote="10.1.2.3", xff=xff)) == "198.51.100.1"


def test_all_hops_trusted_gives_the_farthest(proxies):
    assert client_ip(request(remote="10.1.2.3", xff="10.5.5.5, 10.6.6.6")) == "10.5.5.5"


def test_trusted_proxy_without_header_is_the_client(proxies):
    assert client_ip(request(remote="127.0.0.1")) == "127.0.0.1"


def test_ipv6_through_an_ipv6_proxy(proxies):
    assert client_ip(request(remote="fd00::5", xff="2001:db8::1")) == "2001:db8::1"
    assert client_ip(request(remote="fd00::5", xff="[2001:db8::2]:443")) == "2001:db8::2"


def test_ports_and_mapped_addresses_are_normalised(proxies):
    assert client_ip(request(remote="10.1.2.3", xff="198.51.100.1:51000")) == "198.51.100.1"
    assert client_ip(request(remote="::ffff:203.0.113.9")) == "203.0.113.9"


@pytest.mark.parametrize(
    "xff",
    ["garbage", "198.51.100.1, not-an-ip", "999.1.1.1", "", " , ", "x" * 5000, "1.2.3.4,,", "\x00", "[::1"],
)
def test_malformed_headers_fall_back_to_the_connection(proxies, xff):
    answer = client_ip(request(remote="10.1.2.3", xff=xff))
    assert answer in ("10.1.2.3", "198.51.100.1", "1.2.3.4")
    # Never the garbage itself, so a cache key never holds it.
    assert parse_address(answer) is not None


def test_garbage_right_of_the_proxy_is_the_connection(proxies):
    assert client_ip(request(remote="10.1.2.3", xff="198.51.100.1, not-an-ip")) == "10.1.2.3"


def test_no_connection_address_is_unknown(no_proxies):
    assert client_ip(request(remote="")) == "unknown"
    assert client_ip(request(remote="nonsense")) == "unknown"


def test_proxy_count_takes_the_entry_that_many_from_the_right(settings):
    settings.LOYALTY_TRUSTED_PROXIES = []
    settings.LOYALTY_TRUSTED_PROXY_COUNT = 2
    assert client_ip(request(remote="", xff="1.2.3.4, 198.51.100.1, 10.0.0.2")) == "198.51.100.1"
    # Fewer entries than proxies: the request went around them; believe the connection.
    assert client_ip(request(remote="203.0.113.7", xff="1.2.3.4")) == "203.0.113.7"


def test_ipv6_clients_are_counted_per_64(no_proxies):
    one = client_rate_key(request(remote="2001:db8:1:2::1"))
    other = client_rate_key(request(remote="2001:db8:1:2:ffff:ffff:ffff:ffff"))
    elsewhere = client_rate_key(request(remote="2001:db8:1:3::1"))
    assert one == other == "2001:db8:1:2::"
    assert elsewhere != one
    assert client_rate_key(request(remote="203.0.113.7")) == "203.0.113.7"


def test_settings_refuse_a_bad_proxy_list(monkeypatch):
    import importlib

    import config.settings as module

    monkeypatch.setenv("LOYALTY_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")
    with pytest.raises(ImproperlyConfigured, match="LOYALTY_TRUSTED_PROXIES"):
        importlib.reload(module)
    monkeypatch.setenv("LOYALTY_TRUSTED_PROXIES", "10.0.0.1")
    monkeypatch.setenv("LOYALTY_TRUSTED_PROXY_COUNT", "1")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        importlib.reload(module)
    monkeypatch.delenv("LOYALTY_TRUSTED_PROXIES")
    monkeypatch.delenv("LOYALTY_TRUSTED_PROXY_COUNT")
    importlib.reload(module)
