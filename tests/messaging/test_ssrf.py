"""The SSRF guard: literal checks, DNS checks, and real requests pinned to the checked address."""
from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from messaging.providers.ssrf import (
    UnsafeURL,
    check_url_literal,
    is_allowed_ip,
    resolve_and_check,
    safe_request,
)
from tests.support.stub_server import Reply, StubServer


def allow_loopback() -> override_settings:
    """Return a settings override letting requests reach 127.0.0.0/8 (the local test servers)."""
    return override_settings(SSRF_ALLOWED_NETWORKS=["127.0.0.0/8"])


@pytest.fixture(autouse=True)
def no_allowed_networks() -> Iterator[None]:
    """Start every test from production behaviour, whatever the environment configures."""
    with override_settings(SSRF_ALLOWED_NETWORKS=[]):
        yield


@dataclass
class FakeDNS:
    """Answers for *.test names; every other name goes to the real resolver."""

    records: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    """Replace socket.getaddrinfo at the network edge so names resolve as the test says."""
    fake = FakeDNS()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, ...]]:
        if not (isinstance(host, str) and host.endswith(".test")):
            return real_getaddrinfo(host, port, family, type, proto, flags)
        fake.lookups.append(host)
        if host not in fake.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = []
        for address in fake.records[host]:
            if ":" in address:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                (address, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                (address, port)))
        return answers

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


# --- literal checks (no DNS) ------------------------------------------------------------------

REFUSED_LITERALS = [
    pytest.param("http://127.0.0.1/hook", id="dotted-loopback"),
    pytest.param("http://2130706433/hook", id="decimal-loopback"),
    pytest.param("http://0177.0.0.1/hook", id="octal-loopback"),
    pytest.param("http://0x7f000001/hook", id="hex-loopback"),
    pytest.param("http://0x7f.1/hook", id="hex-short-loopback"),
    pytest.param("http://127.1/hook", id="short-loopback"),
    pytest.param("http://127.0.0.1./hook", id="trailing-dot-loopback"),
    pytest.param("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook", id="fullwidth-loopback"),
    pytest.param("http://[::1]/hook", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]/hook", id="ipv4-mapped-loopback"),
    pytest.param("http://[::ffff:7f00:1]/hook", id="ipv4-mapped-hex-loopback"),
    pytest.param("http://[::127.0.0.1]/hook", id="ipv4-compatible-loopback"),
    pytest.param("http://[2002:7f00:1::]/hook", id="6to4-loopback"),
    pytest.param("http://[64:ff9b::a00:1]/hook", id="nat64-private"),
    pytest.param("http://10.0.0.1/hook", id="private-10"),
    pytest.param("http://172.16.0.1/hook", id="private-172"),
    pytest.param("http://192.168.1.1/hook", id="private-192"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("http://100.64.0.1/hook", id="cgnat"),
    pytest.param("http://224.0.0.1/hook", id="multicast"),
    pytest.param("http://0.0.0.0/hook", id="unspecified"),
    pytest.param("http://0/hook", id="zero"),
    pytest.param("http://255.255.255.255/hook", id="broadcast"),
    pytest.param("http://240.0.0.1/hook", id="reserved"),
    pytest.param("http://198.18.0.1/hook", id="benchmark"),
    pytest.param("http://[fe80::1]/hook", id="ipv6-link-local"),
    pytest.param("http://[fe80::1%25eth0]/hook", id="ipv6-link-local-zone"),
    pytest.param("http://[fc00::1]/hook", id="ipv6-unique-local"),
    pytest.param("http://[fec0::1]/hook", id="ipv6-site-local"),
    pytest.param("http://[ff02::1]/hook", id="ipv6-multicast"),
    pytest.param("http://[::]/hook", id="ipv6-unspecified"),
    pytest.param("http://localhost/hook", id="localhost"),
    pytest.param("http://LOCALHOST:8000/hook", id="localhost-upper-case"),
    pytest.param("http://localhost./hook", id="localhost-trailing-dot"),
    pytest.param("http://foo.localhost/hook", id="subdomain-of-localhost"),
    pytest.param("https://user:pw@127.0.0.1/hook", id="userinfo-before-loopback"),
    pytest.param("https://example.com@127.0.0.1/hook", id="host-like-userinfo"),
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
def test_it_refuses_non_public_hosts_in_any_notation(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url_literal(url)


@pytest.mark.parametrize("url", [
    "ftp://example.com/file",
    "file:///etc/passwd",
    "gopher://example.com:70/_",
    "javascript:alert(1)",
    "dict://example.com:11211/",
    "example.com/hook",
])
def test_it_refuses_schemes_other_than_http_and_https(url: str) -> None:
    with pytest.raises(UnsafeURL, match="scheme"):
        check_url_literal(url)


@pytest.mark.parametrize("url", ["http://", "http:///hook", "https://:443/hook", "http://user@/"])
def test_it_refuses_urls_without_a_host(url: str) -> None:
    with pytest.raises(UnsafeURL, match="host"):
        check_url_literal(url)


@pytest.mark.parametrize("url", [
    "http://example.com\\@127.0.0.1/",
    "http://127.0.0.1\t/hook",
    "http://exa mple.com/",
    "http://example.com/\nHost: internal",
])
def test_it_refuses_characters_that_parsers_disagree_on(url: str) -> None:
    with pytest.raises(UnsafeURL, match="whitespace"):
        check_url_literal(url)


@pytest.mark.parametrize("url", [
    "http://[::1/hook",
    "http://[not-ipv6]/hook",
    "http://08.0.0.1/hook",
    "http://256.0.0.1/hook",
    "http://1.16777216/hook",
    "http://a..b/hook",
    "http://-bad.example/hook",
    "http://example.com:99999/hook",
    "http://example.com:0/hook",
    "",
])
def test_it_refuses_malformed_hosts_and_ports(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url_literal(url)


@pytest.mark.parametrize("url", [
    "http://93.184.216.34/hook",
    "https://93.184.216.34:8443/hook?x=1",
    "http://1572395042/hook",  # 93.184.216.34 in decimal
    "http://[2606:4700::1111]/hook",
    "http://[::ffff:93.184.216.34]/hook",
    "https://hooks.example.com/path",
    "https://user:secret@hooks.example.com/path",
    "HTTPS://Hooks.Example.COM./path",
    "https://b\u00fccher.example/hook",
])
def test_it_allows_public_hosts(url: str) -> None:
    check_url_literal(url)


def test_its_refusal_message_is_one_sentence_for_an_api_field() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url_literal("http://169.254.169.254/")
    message = str(caught.value)
    assert message.endswith(".") and message.count(". ") == 0
    assert "169.254" not in message


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.216.34", True),
    ("2606:4700::1111", True),
    ("::ffff:93.184.216.34", True),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("100.127.255.255", False),
    ("169.254.169.254", False),
    ("::ffff:10.0.0.1", False),
    ("2002:a00:1::1", False),  # 6to4 wrapping 10.0.0.1
    ("2001:db8::1", False),
    ("fd00::1", False),
])
def test_it_classifies_addresses(address: str, allowed: bool) -> None:
    assert is_allowed_ip(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://[::ffff:127.0.0.1]/hook",
])
def test_it_allows_loopback_when_the_network_is_allowed(url: str) -> None:
    with allow_loopback():
        check_url_literal(url)


def test_allowing_a_network_does_not_allow_others() -> None:
    with allow_loopback():
        with pytest.raises(UnsafeURL):
            check_url_literal("http://10.0.0.1/hook")
        with pytest.raises(UnsafeURL):
            check_url_literal("http://[::1]/hook")


def test_it_reads_allowed_networks_at_call_time() -> None:
    with override_settings(SSRF_ALLOWED_NETWORKS=["10.0.0.0/8"]):
        check_url_literal("http://10.9.8.7/hook")
    with pytest.raises(UnsafeURL):
        check_url_literal("http://10.9.8.7/hook")


def test_it_reports_an_invalid_allowed_network_as_misconfiguration() -> None:
    with (
        override_settings(SSRF_ALLOWED_NETWORKS=["not-a-cidr"]),
        pytest.raises(ImproperlyConfigured),
    ):
        check_url_literal("http://10.0.0.1/hook")


# --- DNS checks -------------------------------------------------------------------------------

def test_it_refuses_a_name_resolving_to_a_private_address(dns: FakeDNS) -> None:
    dns.records["internal.test"] = ["10.0.0.5"]
    check_url_literal("https://internal.test/hook")  # names are not resolved here
    with pytest.raises(UnsafeURL, match="resolves"):
        resolve_and_check("https://internal.test/hook")


def test_it_refuses_a_name_when_any_record_is_private(dns: FakeDNS) -> None:
    dns.records["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(UnsafeURL):
        resolve_and_check("https://rebind.test/hook")


@pytest.mark.parametrize("address", ["::1", "::ffff:127.0.0.1", "fe80::1", "169.254.169.254"])
def test_it_refuses_a_name_resolving_to_any_non_public_form(dns: FakeDNS, address: str) -> None:
    dns.records["sneaky.test"] = [address]
    with pytest.raises(UnsafeURL):
        resolve_and_check("http://sneaky.test/hook")


def test_it_returns_the_checked_address_port_and_host(dns: FakeDNS) -> None:
    dns.records["hooks.test"] = ["93.184.216.34", "2606:4700::1111"]
    assert resolve_and_check("https://HOOKS.test/x") == ("93.184.216.34", 443, "hooks.test")
    assert resolve_and_check("http://hooks.test/x") == ("93.184.216.34", 80, "hooks.test")
    assert resolve_and_check("http://hooks.test:8080/x") == ("93.184.216.34", 8080, "hooks.test")
    assert dns.lookups == ["hooks.test"] * 3


def test_it_does_not_resolve_ip_literals(dns: FakeDNS) -> None:
    assert resolve_and_check("http://1572395042:81/x") == ("93.184.216.34", 81, "93.184.216.34")
    assert dns.lookups == []


def test_it_allows_a_name_resolving_into_an_allowed_network(dns: FakeDNS) -> None:
    dns.records["dev.test"] = ["127.0.0.1"]
    with allow_loopback():
        assert resolve_and_check("http://dev.test:9000/") == ("127.0.0.1", 9000, "dev.test")


def test_it_reports_an_unresolvable_name_as_a_connection_error(dns: FakeDNS) -> None:
    with pytest.raises(requests.ConnectionError, match="resolve"):
        resolve_and_check("https://missing.test/hook")


# --- real requests over HTTP --------------------------------------------------------------------

def test_it_posts_to_an_allowed_local_server(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    with allow_loopback():
        response = safe_request("POST", f"http://127.0.0.1:{port}/x", json={"event": "sent"},
                                headers={"X-Signature": "abc"}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    (received,) = stub_server.requests
    assert received.method == "POST"
    assert received.path == "/x"
    assert received.json() == {"event": "sent"}
    assert received.header("Host") == f"127.0.0.1:{port}"
    assert received.header("X-Signature") == "abc"


def test_it_connects_to_the_resolved_address_once_keeping_the_host_header(
    stub_server: StubServer, dns: FakeDNS
) -> None:
    port = stub_server.server.server_address[1]
    dns.records["hooks.test"] = ["127.0.0.1"]
    with allow_loopback():
        response = safe_request("GET", f"http://hooks.test:{port}/x?a=1", params={"b": "2"},
                                timeout=5)
    assert response.status_code == 200
    assert response.url == f"http://hooks.test:{port}/x?a=1"
    (received,) = stub_server.requests
    assert received.path == "/x?a=1&b=2"
    assert received.header("Host") == f"hooks.test:{port}"
    assert dns.lookups == ["hooks.test"]


def test_it_ignores_a_host_header_from_the_caller(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    with allow_loopback():
        safe_request("GET", f"http://127.0.0.1:{port}/x", headers={"host": "metadata.internal"},
                     timeout=5)
    assert stub_server.requests[0].header("Host") == f"127.0.0.1:{port}"


def test_it_sends_url_credentials_as_basic_auth(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    with allow_loopback():
        safe_request("GET", f"http://al%40ice:s3cret@127.0.0.1:{port}/x", timeout=5)
        safe_request("GET", f"http://127.0.0.1:{port}/y", auth=("bob", "pw"), timeout=5)
    first, second = stub_server.requests
    assert first.header("Authorization") == "Basic YWxAaWNlOnMzY3JldA=="  # al@ice:s3cret
    assert second.header("Authorization") == "Basic Ym9iOnB3"  # bob:pw


def test_it_returns_a_redirect_without_following_it(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    stub_server.script("/x", Reply(302, headers={"Location": f"http://127.0.0.1:{port}/other"}))
    with allow_loopback():
        response = safe_request("POST", f"http://127.0.0.1:{port}/x", json={"a": 1},
                                allow_redirects=True, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"] == f"http://127.0.0.1:{port}/other"
    assert [received.path for received in stub_server.requests] == ["/x"]


def test_it_refuses_before_connecting_without_the_override(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    with pytest.raises(UnsafeURL):
        safe_request("POST", f"http://127.0.0.1:{port}/x", json={"a": 1}, timeout=5)
    assert stub_server.requests == []


def test_it_refuses_a_name_resolving_to_loopback_before_connecting(
    stub_server: StubServer, dns: FakeDNS
) -> None:
    port = stub_server.server.server_address[1]
    dns.records["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(UnsafeURL):
        safe_request("GET", f"http://rebind.test:{port}/x", timeout=5)
    assert stub_server.requests == []


def test_it_lets_read_timeouts_propagate(stub_server: StubServer) -> None:
    port = stub_server.server.server_address[1]
    stub_server.script("/slow", Reply(delay=1.0))
    with allow_loopback(), pytest.raises(requests.ReadTimeout):
        safe_request("GET", f"http://127.0.0.1:{port}/slow", timeout=(5, 0.2))


def test_it_lets_connection_errors_propagate() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more, so the connection is refused.
    with allow_loopback(), pytest.raises(requests.ConnectionError):
        safe_request("GET", f"http://127.0.0.1:{port}/x", timeout=5)


# --- real requests over HTTPS -------------------------------------------------------------------

@dataclass
class TLSServer:
    """An HTTPS server on 127.0.0.1 presenting a certificate for hook.test only."""

    port: int
    ca_file: str
    server_names: list[str | None]
    host_headers: list[str | None]


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Create a self-signed certificate for hook.test (it is its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to create a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=hook.test", "-addext", "subjectAltName=DNS:hook.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tls_certificate: tuple[Path, Path]) -> Iterator[TLSServer]:
    """Serve HTTPS on 127.0.0.1, recording the SNI name and Host header of each request."""
    cert, key = tls_certificate
    server_names: list[str | None] = []
    host_headers: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host_headers.append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield TLSServer(server.server_address[1], str(cert), server_names, host_headers)
    server.shutdown()
    server.server_close()


def test_it_verifies_tls_against_the_original_host_name(
    tls_server: TLSServer, dns: FakeDNS
) -> None:
    dns.records["hook.test"] = ["127.0.0.1"]
    with allow_loopback():
        response = safe_request("GET", f"https://hook.test:{tls_server.port}/secure",
                                verify=tls_server.ca_file, timeout=5)
    assert response.status_code == 200
    assert response.text == "ok"
    assert tls_server.server_names == ["hook.test"]
    assert tls_server.host_headers == [f"hook.test:{tls_server.port}"]
    assert dns.lookups == ["hook.test"]


def test_it_fails_tls_when_the_certificate_is_for_another_host(
    tls_server: TLSServer, dns: FakeDNS
) -> None:
    dns.records["other.test"] = ["127.0.0.1"]
    with allow_loopback(), pytest.raises(requests.exceptions.SSLError):
        safe_request("GET", f"https://other.test:{tls_server.port}/secure",
                     verify=tls_server.ca_file, timeout=5)
    assert tls_server.host_headers == []
