"""The client's address, the one thing every throttle and lockout is keyed on.

The address is the connection's peer (``REMOTE_ADDR``). A forwarded header is believed
only when the peer is a proxy the deployment named (``LOYALTY_TRUSTED_PROXIES``, addresses
or networks) or when every request comes through a known number of proxies
(``LOYALTY_TRUSTED_PROXY_COUNT``). Anything else a client sends (``X-Forwarded-For``,
``X-Real-IP``) is its own claim and changes nothing, or rotating the header would give
every request a fresh throttle bucket.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


def parse_address(value: str | None) -> Address | None:
    """An address as a proxy may write it (``[2001:db8::1]:443``, ``203.0.113.5:51000``), or None."""
    value = (value or "").strip().strip('"')
    if not value or len(value) > 64:
        return None
    if value.startswith("["):  # [v6] or [v6]:port
        if "]" not in value:
            return None
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:203.0.113.5 (a dual-stack socket) is the IPv4 client.
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _trusted(address: Address) -> bool:
    return any(address in network for network in _networks(tuple(settings.LOYALTY_TRUSTED_PROXIES)))


def _forwarded_for(request) -> list[str]:
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return [item.strip() for item in header.split(",")] if header else []


def client_address(request) -> Address | None:
    """The client's address as an ``ipaddress`` object; None when the connection has none."""
    remote = parse_address(request.META.get("REMOTE_ADDR"))
    count = settings.LOYALTY_TRUSTED_PROXY_COUNT
    if count:
        # Each of our ``count`` proxies appended the address it was talking to, so the
        # entry ``count`` from the right is the client; fewer entries means the request
        # did not come through all of them.
        hops = _forwarded_for(request)
        if len(hops) < count:
            return remote
        return parse_address(hops[-count]) or remote
    if remote is None or not settings.LOYALTY_TRUSTED_PROXIES or not _trusted(remote):
        return remote
    # The peer is our proxy: walk the chain from the right, past our own proxies, to
    # the first address that is not ours. Entries further left were written by the
    # client and are never read.
    hop = remote
    for entry in reversed(_forwarded_for(request)):
        parsed = parse_address(entry)
        if parsed is None:
            return remote  # a trusted proxy never writes garbage: believe only the connection
        hop = parsed
        if not _trusted(hop):
            return hop
    return hop


def client_ip(request) -> str:
    """The client's address as text (``203.0.113.5``, ``2001:db8::1``), or ``"unknown"``."""
    address = client_address(request)
    return str(address) if address is not None else UNKNOWN


def client_rate_key(request) -> str:
    """What per-address limits count on: the IPv4 address, or the IPv6 /64 it belongs to.

    One IPv6 subscriber gets a whole /64, so counting single IPv6 addresses would let
    them take a new address per request. The answer is still an address (the network's
    first), so it fits where an IP is expected (django-axes stores it as one).
    """
    address = client_address(request)
    if address is None:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)
