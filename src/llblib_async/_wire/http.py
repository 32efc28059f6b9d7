"""The one HTTP client of the registry code: httpx, with Go's proxy rules.

Both HTTP users of the package -- :class:`~llblib_async.registry.RegistryResolver`
(the registry API) and :class:`~llblib_async.DockerAuthProvider` (registry token
servers) -- make their requests with the :class:`httpx.AsyncClient` that
:func:`http_client` returns. httpx is anyio-native, well kept, speaks HTTP/1.1 with
keep-alive, TLS through :mod:`ssl`, and tunnels through proxies (``CONNECT`` for
``https://`` URLs, absolute-form forwarding for ``http://``).

**Proxies** follow Go's ``net/http.ProxyFromEnvironment`` (``golang.org/x/net/http/
httpproxy``), which BuildKit's Go client and its ``authprovider`` use, rather than
httpx's own environment handling (which differs: it reads ``ALL_PROXY``, proxies
loopback addresses and knows no CIDR ranges):

* ``HTTPS_PROXY``/``https_proxy`` for ``https://`` URLs, ``HTTP_PROXY``/``http_proxy``
  for ``http://`` URLs (the upper-case name wins; ``HTTP_PROXY`` is ignored when
  ``REQUEST_METHOD`` is set, i.e. under CGI); a proxy without a scheme means
  ``http://``; ``ALL_PROXY`` is not read;
* requests to ``localhost`` and to loopback IP addresses never use a proxy;
* ``NO_PROXY``/``no_proxy``: comma-separated; ``*`` turns proxies off; an IP address
  or CIDR range (``10.0.0.0/8``) matches those addresses; a name matches itself and its
  sub-domains (``example.com`` and ``.example.com`` and ``*.example.com`` all match
  ``a.example.com``; the latter two not ``example.com`` itself); ``host:port`` entries
  match that port only.

The environment is read when a client is made (one per resolve or token fetch), so a
changed environment applies to the next request (Go reads it once per process).
Redirects are not followed by the client: the callers follow them themselves, to keep
credentials on the host they are meant for.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

__all__ = ["USER_AGENT", "ProxyConfig", "http_client", "read_limited"]

USER_AGENT = "llblib-async"


def _env(mapping: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = mapping.get(name)
        if value:
            return value
    return ""


def _proxy_url(value: str) -> str | None:
    if not value:
        return None
    if "://" not in value:
        value = "http://" + value
    return value


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class _DomainMatch:
    suffix: str  # with a leading dot
    match_host: bool  # the entry had no leading dot: the name itself matches too
    port: str

    def matches(self, host: str, port: str) -> bool:
        if host.endswith(self.suffix) or (self.match_host and host == self.suffix[1:]):
            return not self.port or self.port == port
        return False


@dataclass(frozen=True, slots=True)
class _IPMatch:
    network: _Network
    port: str

    def matches(self, ip: _Address, port: str) -> bool:
        return ip in self.network and (not self.port or self.port == port)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Which proxy a URL goes through (Go's ``httpproxy.Config``; see the module docstring)."""

    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ
        cgi = bool(env.get("REQUEST_METHOD"))
        return cls(
            http_proxy=None if cgi else _proxy_url(_env(env, "HTTP_PROXY", "http_proxy")),
            https_proxy=_proxy_url(_env(env, "HTTPS_PROXY", "https_proxy")),
            no_proxy=_env(env, "NO_PROXY", "no_proxy"),
        )

    def proxy_for(self, url: httpx.URL | str) -> str | None:
        """The proxy URL for ``url``, or ``None`` to connect directly."""
        url = httpx.URL(url)
        proxy = {"https": self.https_proxy, "http": self.http_proxy}.get(url.scheme)
        if proxy is None:
            return None
        port = str(url.port or (443 if url.scheme == "https" else 80))
        return proxy if self._use_proxy(url.host.lower(), port) else None

    def _use_proxy(self, host: str, port: str) -> bool:
        if host == "localhost":
            return False
        ip: _Address | None
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return False
        for entry in (e.strip().lower() for e in self.no_proxy.split(",")):
            if not entry:
                continue
            if entry == "*":
                return False
            match = _parse_no_proxy_entry(entry)
            if match is None:
                continue
            if isinstance(match, _IPMatch):
                if ip is not None and match.matches(ip, port):
                    return False
            elif match.matches(host, port):
                return False
        return True


def _split_host_port(entry: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``host:port`` or ``[v6]:port``; None if not of that form."""
    if entry.startswith("["):
        end = entry.find("]")
        if end == -1 or entry[end + 1 : end + 2] != ":":
            return None
        return entry[1:end], entry[end + 2 :]
    if entry.count(":") != 1:
        return None
    host, port = entry.split(":")
    return host, port


def _parse_no_proxy_entry(entry: str) -> _IPMatch | _DomainMatch | None:
    """One lower-cased ``NO_PROXY`` entry as Go's ``httpproxy.config.init`` reads it."""
    if "/" in entry:
        try:
            return _IPMatch(ipaddress.ip_network(entry, strict=False), "")
        except ValueError:
            pass
    split = _split_host_port(entry)
    host, port = split if split is not None else (entry, "")
    if not host:
        return None
    try:
        return _IPMatch(ipaddress.ip_network(host), port)  # one address
    except ValueError:
        pass
    if host.startswith("*."):
        host = host[1:]
    match_host = not host.startswith(".")
    return _DomainMatch("." + host if match_host else host, match_host, port)


class _ProxyRouter(httpx.AsyncBaseTransport):
    """Sends each request directly or through the proxy :class:`ProxyConfig` picks."""

    def __init__(self, config: ProxyConfig, verify: ssl.SSLContext) -> None:
        self._config = config
        self._verify = verify
        self._direct = httpx.AsyncHTTPTransport(verify=verify)
        self._proxied: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self._config.proxy_for(request.url)
        transport = self._direct
        if proxy is not None:
            transport = self._proxied.get(proxy) or self._proxied.setdefault(
                proxy, httpx.AsyncHTTPTransport(verify=self._verify, proxy=proxy)
            )
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self._direct, *self._proxied.values()):
            await transport.aclose()


def http_client(
    *, timeout: float, verify: ssl.SSLContext | None = None, proxies: ProxyConfig | None = None
) -> httpx.AsyncClient:
    """An httpx client for registry and token-server requests (``async with`` it).

    ``verify``: the TLS context (default: the system's CA certificates, hostname
    checked); ``proxies``: default :meth:`ProxyConfig.from_environment`. Redirects are
    returned, not followed.
    """
    router = _ProxyRouter(
        proxies if proxies is not None else ProxyConfig.from_environment(),
        verify if verify is not None else ssl.create_default_context(),
    )
    return httpx.AsyncClient(
        transport=router,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``; ``ValueError`` if longer than ``limit`` bytes."""
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ValueError(f"response body of {length} bytes is larger than {limit}")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"response body larger than {limit} bytes")
    return bytes(body)
