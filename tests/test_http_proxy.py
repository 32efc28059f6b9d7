"""The registry code's HTTP client honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY as Go does.

A real proxy (``llblib_async.testing.http_proxy``) runs on loopback and resolves the
name ``registry.test`` to 127.0.0.1; nothing else on the machine resolves it, so a
request for ``registry.test`` succeeds only through the proxy, and one that ``NO_PROXY``
sends around it fails to resolve. The registry and the token server are the suite's
real ones (distribution and the token server fixture); ``https://`` goes through a TLS
front with a throw-away certificate, tunnelled by the proxy with ``CONNECT``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from llblib_async import DockerAuthProvider, RegistryError, TokenFetchError, llb
from llblib_async._wire.http import ProxyConfig
from llblib_async.registry import RegistryResolver
from llblib_async.testing.docker_registry import Registry
from llblib_async.testing.http_proxy import serve_http_proxy, serve_tls_front
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAKE_HOST = "registry.test"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_VARIABLES, "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _port(image: PushedImage) -> int:
    return int(image.repository.split("/")[0].rpartition(":")[2])


async def test_registry_requests_go_through_http_proxy_and_no_proxy_bypasses_it(
    buildkit_busybox_image: PushedImage, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    port = _port(buildkit_busybox_image)
    name = f"{FAKE_HOST}:{port}"
    ref = buildkit_busybox_image.ref.replace(f"127.0.0.1:{port}", name)
    platform = llb.default_platform()
    async with serve_http_proxy({FAKE_HOST: "127.0.0.1"}) as proxy:
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
        resolver = RegistryResolver(insecure_hosts={name})
        digest, config = await resolver.resolve(ref, platform)
        assert digest == buildkit_busybox_image.digest
        assert ("GET", f"http://{name}/v2/busybox/manifests/{buildkit_busybox_image.tag}") in proxy.requests
        # loopback registries never go through a proxy (Go's rule)
        seen = len(proxy.requests)
        assert await RegistryResolver().resolve(buildkit_busybox_image.ref, platform) == (digest, config)
        assert len(proxy.requests) == seen
        # NO_PROXY names: the request goes direct, where registry.test does not resolve
        for no_proxy in (FAKE_HOST, f".test,{uuid.uuid4().hex}.example", f"{FAKE_HOST}:{port}", "*"):
            clean_proxy_env.setenv("NO_PROXY", no_proxy)
            with pytest.raises(RegistryError, match=FAKE_HOST):
                await RegistryResolver(insecure_hosts={name}).resolve(ref, platform)
            assert len(proxy.requests) == seen, no_proxy
        # a NO_PROXY entry for another port does not apply
        clean_proxy_env.setenv("no_proxy", f"{FAKE_HOST}:{port + 1}")
        clean_proxy_env.delenv("NO_PROXY")
        assert await RegistryResolver(insecure_hosts={name}).resolve(ref, platform) == (digest, config)
        assert len(proxy.requests) > seen


async def test_https_registry_requests_are_tunnelled_with_connect(
    buildkit_busybox_image: PushedImage, clean_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = _port(buildkit_busybox_image)
    platform = llb.default_platform()
    async with (
        serve_tls_front(f"127.0.0.1:{port}", [FAKE_HOST], tmp_path) as front,
        serve_http_proxy({FAKE_HOST: "127.0.0.1"}) as proxy,
    ):
        name = f"{FAKE_HOST}:{front.port}"
        ref = buildkit_busybox_image.ref.replace(f"127.0.0.1:{port}", name)
        clean_proxy_env.setenv("https_proxy", proxy.url)
        clean_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for https URLs
        resolver = RegistryResolver(ssl_context=front.client_context())
        digest, _ = await resolver.resolve(ref, platform)
        assert digest == buildkit_busybox_image.digest
        assert proxy.requests
        assert set(proxy.requests) == {("CONNECT", name)}
        clean_proxy_env.setenv("no_proxy", ".test")
        with pytest.raises(RegistryError, match=FAKE_HOST):
            await RegistryResolver(ssl_context=front.client_context()).resolve(ref, platform)


async def test_token_requests_go_through_the_proxy(
    buildkit_token_registry: Registry, clean_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = buildkit_token_registry.token_server
    assert server is not None
    assert buildkit_token_registry.auth is not None
    user, password = buildkit_token_registry.auth
    registry_port = buildkit_token_registry.host.rpartition(":")[2]
    host = f"{FAKE_HOST}:{registry_port}"
    realm = server.realm.replace("127.0.0.1", FAKE_HOST)  # plain http on the registry's own name
    repo = f"proxied/{uuid.uuid4().hex}"
    scopes = [f"repository:{repo}:pull"]
    provider = DockerAuthProvider(tmp_path / "none.json", credentials={host: (user, password)})
    async with serve_http_proxy({FAKE_HOST: "127.0.0.1"}) as proxy:
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))  # no scheme: http
        token, expires_in, _ = await provider.fetch_token(host, realm, server.service, scopes)
        assert token.count(".") == 2
        assert expires_in == 300
        assert ("POST", realm) in proxy.requests
        [request] = server.requests_for(repo)
        assert (request.method, request.user, request.authenticated) == ("POST", user, True)
        seen = len(proxy.requests)
        clean_proxy_env.setenv("NO_PROXY", "*.test")
        with pytest.raises(TokenFetchError, match="request failed"):
            await provider.fetch_token(host, realm, server.service, scopes)
        assert len(proxy.requests) == seen


async def test_proxy_rules_follow_go() -> None:
    env = {"HTTP_PROXY": "proxy:3128", "HTTPS_PROXY": "https://secure:443", "NO_PROXY": ""}

    def proxy(url: str, **extra: str) -> str | None:
        return ProxyConfig.from_environment({**env, **extra}).proxy_for(url)

    assert proxy("http://example.com/") == "http://proxy:3128"
    assert proxy("https://example.com/") == "https://secure:443"
    assert proxy("ftp://example.com/") is None
    for loopback in ("localhost", "127.0.0.1", "127.1.2.3", "[::1]"):
        assert proxy(f"https://{loopback}:5000/") is None, loopback
    assert proxy("http://example.com/", REQUEST_METHOD="GET") is None  # CGI: HTTP_PROXY ignored
    assert proxy("https://example.com/", REQUEST_METHOD="GET") == "https://secure:443"
    lower = {"http_proxy": "http://lower:1", "https_proxy": "", "no_proxy": "example.com"}
    assert ProxyConfig.from_environment(lower).proxy_for("http://other.org/") == "http://lower:1"
    assert ProxyConfig.from_environment(lower).proxy_for("http://example.com/") is None
    assert ProxyConfig.from_environment({"ALL_PROXY": "http://all:1"}).proxy_for("http://x.org/") is None
    cases: dict[str, dict[str, str | None]] = {
        "example.com": {"example.com": None, "a.example.com": None, "notexample.com": "p"},
        ".example.com": {"example.com": "p", "a.example.com": None},
        "*.example.com": {"example.com": "p", "a.b.example.com": None},
        "example.com:8080": {"example.com:8080": None, "example.com": "p"},
        "10.0.0.0/8": {"10.1.2.3": None, "11.0.0.1": "p", "ten.example": "p"},
        "192.168.1.1": {"192.168.1.1": None, "192.168.1.2": "p"},
        "[2001:db8::1]:443": {"[2001:db8::1]:443": None, "[2001:db8::1]:80": "p"},
        "2001:db8::1": {"[2001:db8::1]:80": None},
        " , *": {"anything.org": None},
        "EXAMPLE.com": {"Example.COM": None},
    }
    for no_proxy, hosts in cases.items():
        for host, want in hosts.items():
            got = proxy(f"http://{host}/", NO_PROXY=no_proxy)
            assert got == ("http://proxy:3128" if want == "p" else None), (no_proxy, host)


# --------------------------------------------------------------------------- token redirects


async def test_token_requests_follow_redirects_without_credentials(
    clean_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Token servers may redirect: the target is checked by the realm policy, the
    Authorization header is not sent to it, and a 303 turns the OAuth POST into a GET."""
    seen: list[tuple[str, str, str]] = []  # method, path, authorization

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        path, _, query = target.partition("?")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:] if line)}
        if int(headers.get("content-length", "0")):
            await reader.readexactly(int(headers["content-length"]))
        seen.append((method, path, headers.get("authorization", "")))
        body = b""
        if path == "/getonly" and method == "POST":
            status, extra = "404 Not Found", ""
        elif path in ("/token", "/getonly"):
            status, extra = "307 Temporary Redirect", f"Location: /issued?{query}\r\n"
            if method == "POST":
                status, extra = "303 See Other", "Location: /issued\r\n"
        elif path == "/unsafe":
            status, extra = "302 Found", "Location: http://auth.example/token\r\n"
        else:
            status, extra, body = "200 OK", "", b'{"token": "t0k", "access_token": "t0k"}'
        writer.write(
            f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    anonymous = DockerAuthProvider(tmp_path / "none.json")
    with_password = DockerAuthProvider(tmp_path / "none.json", credentials={host: ("u", "p")})
    async with server:
        assert (await anonymous.fetch_token(host, f"http://{host}/token", "svc", ["s"]))[0] == "t0k"
        assert seen == [("GET", "/token", ""), ("GET", "/issued", "")]
        seen.clear()
        assert (await with_password.fetch_token(host, f"http://{host}/token", "svc", ["s"]))[0] == "t0k"
        assert seen == [("POST", "/token", ""), ("GET", "/issued", "")]
        seen.clear()
        # the OAuth POST answered 404: GET with basic auth, which is not sent on to the redirect
        assert (await with_password.fetch_token(host, f"http://{host}/getonly", "svc", ["s"]))[0] == "t0k"
        assert [(m, p) for m, p, _ in seen] == [("POST", "/getonly"), ("GET", "/getonly"), ("GET", "/issued")]
        assert seen[1][2].startswith("Basic ")
        assert seen[2][2] == ""
        with pytest.raises(TokenFetchError, match="refusing a plain-http token server"):
            await anonymous.fetch_token(host, f"http://{host}/unsafe", "svc", [])
