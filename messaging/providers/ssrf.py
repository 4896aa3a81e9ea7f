"""Guard outgoing requests to user-supplied URLs (webhooks, AI callbacks, MMS media) against SSRF.

Three layers, cheapest first:

* `check_url_literal` validates a URL without DNS (API serializers answer 400 with its message).
* `resolve_and_check` resolves the host once and refuses it when any address is non-public.
* `safe_request` sends the request to exactly that checked address (no second lookup an attacker's
  DNS could answer differently), keeping the Host header, TLS SNI and certificate verification
  on the original host name, and never follows redirects.

`settings.SSRF_ALLOWED_NETWORKS` lists CIDRs that are reachable although private (development and
tests, e.g. a local stub server on 127.0.0.1); it is read on every call.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
# Used only when the caller gives no timeout: a user-supplied URL must never hang a worker.
DEFAULT_TIMEOUT = (5.0, 15.0)

# Python's is_private does not cover shared address space (RFC 6598), so it is listed here.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Everything outside global unicast is special-purpose in IPv6 (mapped forms are unwrapped first).
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# NAT64 gateways translate these to the embedded IPv4 address, which may be internal.
_NAT64_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
# Names that resolvers answer locally (RFC 6761 and common /etc/hosts entries), never via DNS.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

# A host made only of numeric parts is an IPv4 address to inet_aton/getaddrinfo, whatever the
# notation (decimal, octal with a leading 0, hex with 0x, 1 to 4 parts).
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# Parsers disagree on these (browsers read "\" as "/", urlsplit silently drops tabs/newlines),
# which is how a URL checked as one host gets fetched from another.
_AMBIGUOUS_CHARS = re.compile(r"[\x00-\x20\x7f\\]")

_REFUSED_ADDRESS = "URL points to a private, loopback or otherwise non-public address."
_REFUSED_RESOLUTION = "URL host resolves to a private, loopback or otherwise non-public address."


class UnsafeURL(ValueError):
    """The URL may not be fetched; str(exc) says why in one sentence suitable for an API 400."""


@dataclass(frozen=True)
class _Target:
    """A URL split into the parts the guard checks and the request is rebuilt from."""

    scheme: str
    host: str  # ASCII, lower case, no brackets or trailing dot; canonical text for IP literals
    port: int
    ip: IPAddress | None  # set when the host is an IP literal
    path: str
    query: str
    username: str | None
    password: str | None

    @property
    def host_header(self) -> str:
        """Return the Host header value the server would get had the URL been fetched directly."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def is_allowed_ip(ip: IPAddress) -> bool:
    """Return True when the address is public, or inside settings.SSRF_ALLOWED_NETWORKS."""
    if _in_allowed_networks(ip):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # A socket to ::ffff:a.b.c.d reaches a.b.c.d itself, so judge that address.
            return is_allowed_ip(ip.ipv4_mapped)
        if not _is_public(ip):
            return False
        return all(_is_public(embedded) for embedded in _embedded_ipv4(ip))
    return _is_public(ip)


def check_url_literal(url: str) -> None:
    """Validate a URL without DNS; raise UnsafeURL when it must not be fetched.

    Refuses schemes other than http/https, a missing or malformed host, local-only host names
    (localhost, *.localhost) and IP literals in any notation that inet_aton or getaddrinfo
    accept (decimal, octal, hex, short forms, bracketed IPv6, IPv4-mapped IPv6) unless allowed.
    Host names are not resolved here: `resolve_and_check` does that before any request.
    """
    _parse(url)


def resolve_and_check(url: str) -> tuple[str, int, str]:
    """Check the URL, resolve its host once and return (ip_to_connect_to, port, hostname).

    Raises UnsafeURL when the URL fails `check_url_literal` or when ANY resolved address is
    not allowed: refusing on one bad record defeats DNS answers mixing public and private
    addresses. A name that does not resolve raises requests.ConnectionError ("Failed to
    resolve ..."), since a DNS outage is transient rather than a property of the URL.
    """
    target = _parse(url)
    return _resolve(target), target.port, target.host


def safe_request(method: str, url: str, **kwargs: Any) -> requests.Response:
    """Send one request to the address `resolve_and_check` approved, never resolving again.

    The connection goes to the pinned IP while the Host header, TLS SNI and certificate
    verification use the original host name. Redirects are never followed (allow_redirects is
    forced off; a 3xx comes back as the response), proxies from the environment are ignored
    (a proxy would resolve the name itself) and credentials in the URL become basic auth unless
    `auth` is given. Other keyword arguments (timeout, json, data, headers, auth, params, verify,
    ...) go to requests unchanged, and requests exceptions propagate unchanged. UnsafeURL is
    raised before any connection is made.
    """
    target = _parse(url)
    ip = _resolve(target)

    pinned_host = f"[{ip}]" if ":" in ip else ip
    pinned_url = urlunsplit(
        (target.scheme, f"{pinned_host}:{target.port}", target.path or "/", target.query, "")
    )

    # The caller's Host header could name a different virtual host than the one checked.
    headers = {
        name: value for name, value in (kwargs.pop("headers", None) or {}).items()
        if name.lower() != "host"
    }
    headers["Host"] = target.host_header
    kwargs["headers"] = headers
    kwargs["allow_redirects"] = False
    kwargs["proxies"] = {}
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    if target.username is not None and kwargs.get("auth") is None:
        kwargs["auth"] = (target.username, target.password or "")

    session = requests.Session()
    # No environment proxies or .netrc: both would apply to the pinned IP, not the checked host.
    session.trust_env = False
    if target.scheme == "https" and target.ip is None:
        session.mount("https://", _PinnedHostAdapter(target.host))
    try:
        response = session.request(method, pinned_url, **kwargs)
    finally:
        # A streamed body is still being read through the session's pool.
        if not kwargs.get("stream"):
            session.close()
    # Report the URL the caller asked for (without credentials), not the pinned address.
    response.url = urlunsplit(
        (target.scheme, target.host_header, target.path or "/", target.query, "")
    )
    return response


class _PinnedHostAdapter(HTTPAdapter):
    """Do TLS for `hostname` (SNI and certificate check) whatever address the URL names."""

    def __init__(self, hostname: str, **kwargs: Any) -> None:
        # HTTPAdapter.__init__ calls init_poolmanager, which needs the name already.
        self._pinned_hostname = hostname
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager with SNI and hostname verification bound to the host name."""
        pool_kwargs["server_hostname"] = self._pinned_hostname
        pool_kwargs["assert_hostname"] = self._pinned_hostname
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _parse(url: str) -> _Target:
    """Split and validate a URL; raise UnsafeURL for anything that must not be fetched."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("URL is empty.")
    if _AMBIGUOUS_CHARS.search(url):
        raise UnsafeURL("URL must not contain whitespace, control characters or backslashes.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit refuses bad brackets and ports outside 0-65535.
        raise UnsafeURL("URL is malformed (check the host and port).") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("URL scheme must be http or https.")
    if not parts.hostname:
        raise UnsafeURL("URL must include a host.")
    if port == 0:
        raise UnsafeURL("URL port must be between 1 and 65535.")

    host, ip = _parse_host(parts.hostname)
    if ip is not None and not is_allowed_ip(ip):
        raise UnsafeURL(_REFUSED_ADDRESS)
    return _Target(
        scheme=scheme,
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        ip=ip,
        path=parts.path,
        query=parts.query,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _parse_host(hostname: str) -> tuple[str, IPAddress | None]:
    """Return (normalized host, IP when the host is an IP literal) or raise UnsafeURL."""
    if ":" in hostname:
        # Only IPv6 literals contain ':' once urlsplit removed brackets and port; a zone id
        # ("%25eth0") does not change which address is reached.
        try:
            ip6 = ipaddress.IPv6Address(hostname.split("%", 1)[0])
        except ValueError as exc:
            raise UnsafeURL("URL host is not a valid IPv6 address.") from exc
        return str(ip6), ip6

    host = hostname
    if not host.isascii():
        # Resolvers see the IDNA form, and NFKC folds e.g. full-width digits into an IP.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UnsafeURL("URL host is not a valid host name.") from exc
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]

    if _NUMERIC_HOST.fullmatch(host):
        ip4 = _parse_ipv4(host)
        return str(ip4), ip4
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise UnsafeURL("URL host is not a valid host name.")
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise UnsafeURL("URL host refers to the local machine.")
    return host, None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address:
    """Parse a numeric host like inet_aton: 1-4 parts, decimal/0octal/0xhex, last part fills.

    Raises UnsafeURL for numeric hosts inet_aton would reject ("08", "256.1.1.1"): they are
    not host names either, and resolvers differ on what they do with them.
    """
    values = []
    for part in host.split("."):
        try:
            if part.startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError as exc:
            raise UnsafeURL("URL host is not a valid IP address.") from exc
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        raise UnsafeURL("URL host is not a valid IP address.")
    number = 0
    for value in leading:
        number = number << 8 | value
    return ipaddress.IPv4Address(number << (8 * (4 - len(leading))) | last)


def _resolve(target: _Target) -> str:
    """Return the IP to connect to; raise UnsafeURL when any address of the host is refused."""
    if target.ip is not None:
        # _parse already refused a disallowed literal; there is nothing to look up.
        return str(target.ip)
    try:
        infos = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise requests.exceptions.ConnectionError(
            f"Failed to resolve {target.host!r}: {exc}"
        ) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise requests.exceptions.ConnectionError(f"Failed to resolve {target.host!r}: no address")
    if not all(is_allowed_ip(address) for address in addresses):
        raise UnsafeURL(_REFUSED_RESOLUTION)
    # getaddrinfo already ordered the answers by preference (RFC 6724).
    return str(addresses[0])


def _is_public(ip: IPAddress) -> bool:
    """Return True for globally routable unicast addresses (ignores the allow list)."""
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip not in _CGNAT
    return ip in _IPV6_GLOBAL_UNICAST and not ip.is_site_local


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses a transition mechanism would forward this address to."""
    embedded = []
    if ip.sixtofour is not None:
        embedded.append(ip.sixtofour)
    if ip.teredo is not None:
        embedded.extend(ip.teredo)
    if any(ip in prefix for prefix in _NAT64_PREFIXES):
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return embedded


def _in_allowed_networks(ip: IPAddress) -> bool:
    """Return True when settings.SSRF_ALLOWED_NETWORKS contains the address."""
    configured = getattr(settings, "SSRF_ALLOWED_NETWORKS", None) or ()
    if isinstance(configured, str):
        configured = [configured]
    return any(ip in network for network in _networks(tuple(configured)))


@functools.lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings once per distinct setting value."""
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"SSRF_ALLOWED_NETWORKS has an invalid CIDR: {exc}") from exc
