"""Daemon addresses and the gRPC connection to BuildKit.

Address forms accepted by :func:`parse_address` / :func:`open_connection`:

``unix:///abs/path.sock``
    buildkitd on a unix socket, gRPC over HTTP/2 with prior knowledge (h2c).
``tcp://host:port``, ``tcp://[::1]:port``
    buildkitd on TCP: plain h2c, or TLS (ALPN ``h2``) when a :class:`TLSConfig` is given.
``docker://``
    the BuildKit embedded in the Docker daemon at ``$DOCKER_HOST`` (``unix://`` only) or,
    when that is unset, ``/var/run/docker.sock`` -- like the docker CLI.
``docker+unix:///path/docker.sock``
    the BuildKit embedded in the Docker daemon listening on that socket.

Why ``docker://`` means "the Docker daemon" here: in BuildKit's Go client ``docker-container://``
names a *container* running buildkitd (a connection helper exec'ing ``docker exec``), and
buildx spells the daemon's own builder as the ``docker`` driver.  This library talks to the
daemon's embedded BuildKit directly over its API socket (``POST /grpc`` upgraded to HTTP/2,
spec §8.1), so it uses ``docker://`` for "the daemon the docker CLI would use" and
``docker+unix://`` (the ``+transport`` convention of e.g. ``git+ssh``) for an explicit socket.
Connection-helper schemes (``docker-container://``, ``kube-pod://``, ``ssh://``...) are not
supported and are rejected with :class:`~llblib_async.errors.AddressError`.

With no address, :func:`open_connection` uses ``$BUILDKIT_HOST`` if set (and only that, like
``buildctl``: an explicit choice must not silently fall back to another daemon); otherwise it
tries, in order, the rootless socket ``$XDG_RUNTIME_DIR/buildkit/buildkitd.sock`` (non-root
only), ``/run/buildkit/buildkitd.sock`` and the Docker daemon, skipping sockets that do not exist.

Every connection is probed with ``Control.ListWorkers`` before it is returned, so a wrong or
dead address fails in :func:`open_connection` with :class:`DaemonUnreachableError` within
``timeout`` seconds instead of on the first real call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import h2.exceptions
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.protocol import H2Protocol

from ._errors_grpc import BuildKitStatusDetailsCodec
from ._pb.moby.buildkit import v1 as control
from ._session import _FastReceiver, _use_fast_streams
from .errors import AddressError, DaemonUnreachableError

__all__ = [
    "DEFAULT_BUILDKITD_SOCKET",
    "DEFAULT_DOCKER_SOCKET",
    "Address",
    "Connection",
    "TLSConfig",
    "docker_hijack",
    "open_connection",
    "parse_address",
]

DEFAULT_BUILDKITD_SOCKET = "/run/buildkit/buildkitd.sock"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"

Scheme = Literal["unix", "tcp", "docker"]

# BuildKit connection-helper schemes we recognise only to give a clear error.
_HELPER_SCHEMES = frozenset(
    {"docker-container", "kube-pod", "podman-container", "nerdctl-container", "ssh", "npipe"}
)
# sockaddr_un.sun_path is 108 bytes on Linux (104 on the BSDs/macOS), including the NUL.
_MAX_UNIX_PATH = 103 if sys.platform == "darwin" else 107
_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
# Bound on an HTTP/1.1 response head from the Docker API; real ones are ~200 bytes.
_MAX_HTTP_HEAD = 64 * 1024
_MAX_ERROR_BODY = 4096
_USER_AGENT = "llblib-async"


# --------------------------------------------------------------------------------------------
# Addresses


@dataclass(frozen=True)
class Address:
    """A parsed daemon address; ``str(address)`` is its canonical form.

    ``path`` is the socket path for ``unix`` and ``docker`` (``None`` for a bare ``docker://``,
    resolved from ``$DOCKER_HOST`` at connect time); ``host``/``port`` are set for ``tcp``.
    """

    scheme: Scheme
    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        if self.scheme == "docker":
            return "docker://" if self.path is None else f"docker+unix://{self.path}"
        host = self.host or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"tcp://{host}:{self.port}"


def parse_address(address: str) -> Address:
    """Parse a daemon address (see the module docstring); raises :class:`AddressError`."""

    def bad(reason: str) -> AddressError:
        return AddressError(address, reason)

    if not address:
        raise bad("empty address")
    if address != address.strip() or any(c.isspace() for c in address):
        raise bad("contains whitespace")
    scheme, sep, rest = address.partition("://")
    if not sep:
        if address.startswith("/"):
            raise bad(f"missing scheme; did you mean 'unix://{address}'?")
        raise bad("missing scheme (expected unix://, tcp://, docker:// or docker+unix://)")
    scheme = scheme.lower()
    if scheme == "unix":
        return Address("unix", path=_parse_socket_path(rest, bad))
    if scheme == "docker+unix":
        return Address("docker", path=_parse_socket_path(rest, bad))
    if scheme == "docker":
        if rest:
            raise bad(
                "docker:// takes no host or path (it means $DOCKER_HOST or the default socket); "
                "use docker+unix:///path/to/docker.sock for an explicit socket"
            )
        return Address("docker")
    if scheme == "tcp":
        host, port = _parse_host_port(rest, bad)
        return Address("tcp", host=host, port=port)
    if scheme in _HELPER_SCHEMES:
        raise bad(f"the {scheme}:// connection helper is not supported")
    raise bad(f"unsupported scheme {scheme!r} (expected unix://, tcp://, docker:// or docker+unix://)")


def _parse_socket_path(rest: str, bad: Callable[[str], AddressError]) -> str:
    if not rest:
        raise bad("missing socket path (expected unix:///absolute/path)")
    if not rest.startswith("/"):
        # unix://foo/bar would put "foo" in the URL's host part; Go's grpc rejects it too.
        raise bad("the socket path must be absolute: use three slashes, unix:///path")
    if "\0" in rest:
        raise bad("NUL byte in socket path")
    if rest.endswith("/"):
        raise bad("the socket path names a directory")
    if len(os.fsencode(rest)) > _MAX_UNIX_PATH:
        raise bad(f"socket path is longer than the {_MAX_UNIX_PATH} bytes a unix socket address can hold")
    return rest


def _parse_host_port(rest: str, bad: Callable[[str], AddressError]) -> tuple[str, int]:
    if rest.endswith("/"):
        rest = rest[:-1]  # tcp://host:1234/ is common in configs; nothing else may follow
    for ch, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("@", "user info")):
        if ch in rest:
            raise bad(f"tcp:// addresses take only host:port, not {what}")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise bad("unterminated '[' in IPv6 address")
        host, after = rest[1:end], rest[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        if not after.startswith(":"):
            raise bad("missing port (expected tcp://[v6addr]:port)")
        port_s = after[1:]
    else:
        host, sep, port_s = rest.rpartition(":")
        if not sep:
            raise bad("missing port (expected tcp://host:port)")
        if ":" in host:
            raise bad("IPv6 addresses must be in brackets: tcp://[::1]:port")
        if not host:
            raise bad("missing host (expected tcp://host:port)")
        if not _HOSTNAME_RE.fullmatch(host):
            raise bad(f"invalid host name {host!r}")
    if not port_s:
        raise bad("missing port")
    if not _PORT_RE.fullmatch(port_s) or not 0 < int(port_s) < 65536:
        raise bad(f"invalid port {port_s!r} (expected 1-65535)")
    return host, int(port_s)


# --------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings for ``tcp://`` addresses (buildctl's ``--tlscacert/--tlscert/--tlskey/--tlsservername``).

    ``ca_cert``: PEM CA bundle to verify the daemon with (default: the system store);
    ``cert``/``key``: client certificate and key (buildkitd started with ``--tlscacert``
    requires one); ``server_name``: name to verify the daemon's certificate against, when it
    differs from the host in the address.
    """

    ca_cert: str | os.PathLike[str] | None = None
    cert: str | os.PathLike[str] | None = None
    key: str | os.PathLike[str] | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("TLSConfig: key given without cert")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: verifies the server, offers the client cert, ALPN ``h2`` (gRPC needs it)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_cert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["h2"])
        return ctx


# --------------------------------------------------------------------------------------------
# The grpclib channel

ProtocolFactory = Callable[[], H2Protocol]
Dialer = Callable[[ProtocolFactory], Awaitable[H2Protocol]]


class _DialChannel(Channel):
    """A grpclib ``Channel`` whose transport is made by our own *dialer*.

    **grpclib private API, pinned grpclib==0.4.9** -- the only place the library relies on it:
    ``Channel.__connect__`` calls ``self._create_connection()`` whenever it has no live
    connection (first call, and after the connection dropped) and expects the connected
    ``H2Protocol`` back; ``self._protocol_factory`` builds that protocol with the channel's
    HTTP/2 settings.  Overriding ``_create_connection`` lets one Channel class serve unix, TCP,
    TLS and the Docker ``/grpc`` upgrade, with every (re)dial bounded by ``dial_timeout``.

    ``authority`` only feeds grpclib's ``:authority`` header (BuildKit ignores it; Go sends the
    TLS server name, or the host); ``ssl`` only selects the ``https`` ``:scheme`` -- the dialer
    does the TLS handshake itself.
    """

    def __init__(
        self,
        dial: Dialer,
        *,
        dial_timeout: float,
        authority: tuple[str, int],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            authority[0],
            authority[1],
            ssl=ssl_context,
            status_details_codec=BuildKitStatusDetailsCodec(),
        )
        self._dial = dial
        self._dial_timeout = dial_timeout

    async def _create_connection(self) -> H2Protocol:
        try:
            async with asyncio.timeout(self._dial_timeout):
                return await self._dial(self._protocol_factory)
        except TimeoutError:
            # A re-dial during some later call: say "could not connect", which callers map
            # to ConnectionLostError, rather than a bare TimeoutError that reads like the
            # call's own deadline.
            raise ConnectionError(f"could not connect within {self._dial_timeout:g}s") from None


# --------------------------------------------------------------------------------------------
# Docker API helpers (HTTP/1.1 on the Docker socket)


class _ConnectFailed(Exception):
    """Internal: one connection attempt failed for ``reason``; turned into a public error.

    ``status`` is the HTTP status when the daemon answered an upgrade with an error."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class UpgradeRefusedError(DaemonUnreachableError):
    """The Docker daemon answered a hijack ``POST`` with HTTP ``status`` instead of ``101``."""

    def __init__(self, address: str, reason: str, status: int) -> None:
        super().__init__(address, reason)
        self.status = status


def _http_request(method: str, path: str, headers: Sequence[tuple[str, str]]) -> bytes:
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"invalid HTTP path {path!r}")
    lines = [f"{method} {path} HTTP/1.1", "Host: docker", f"User-Agent: {_USER_AGENT}"]
    for name, value in headers:
        # Refuse header injection: a CR/LF would let a value start a new header or the body.
        if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
            raise ValueError(f"invalid HTTP header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_http_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    # Byte by byte on purpose: after a 101 the very next byte belongs to HTTP/2, so nothing
    # past the blank line may be consumed (spec §8.1).  The head is ~100 bytes and recv on a
    # non-blocking socket with buffered data returns without a loop round trip.
    buf = bytearray()
    while not buf.endswith(b"\r\n\r\n"):
        if len(buf) >= _MAX_HTTP_HEAD:
            raise _ConnectFailed("HTTP response header too large; not a Docker API socket?")
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            got = f" (got {bytes(buf[:60])!r})" if buf else ""
            raise _ConnectFailed(f"connection closed before an HTTP response{got}; not a Docker API socket?")
        buf += chunk
    return bytes(buf)


def _parse_http_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _PORT_RE.fullmatch(parts[1]):
        raise _ConnectFailed(f"not an HTTP/1.1 response: {lines[0][:60]!r}; not a Docker API socket?")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _read_error_body(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, headers: dict[str, str]
) -> str:
    """The (bounded) body of an error response; Docker sends ``{"message": "..."}``."""
    try:
        want = min(int(headers.get("content-length", "0")), _MAX_ERROR_BODY)
    except ValueError:
        want = 0
    body = bytearray()
    while len(body) < want:
        chunk = await loop.sock_recv(sock, want - len(body))
        if not chunk:
            break
        body += chunk
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return str(decoded["message"])
    return text


async def _unix_socket(loop: asyncio.AbstractEventLoop, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def _hijack(docker_socket: str, path: str, headers: Sequence[tuple[str, str]]) -> socket.socket:
    """``POST path`` with ``Upgrade: h2c`` on the Docker socket; the socket after the ``101``."""
    request = _http_request(
        "POST", path, [("Connection", "Upgrade"), ("Upgrade", "h2c"), ("Content-Length", "0"), *headers]
    )
    loop = asyncio.get_running_loop()
    sock = await _unix_socket(loop, docker_socket)
    try:
        await loop.sock_sendall(sock, request)
        status, reason, resp_headers = _parse_http_head(await _read_http_head(loop, sock))
        if status != 101:
            body = await _read_error_body(loop, sock, resp_headers)
            message = f"POST {path} answered {status} {reason}" + (f": {body}" if body else "")
            raise _ConnectFailed(message, status)
    except BaseException:
        sock.close()
        raise
    return sock


async def _docker_ping(sock: socket.socket) -> str | None:
    """``GET /_ping`` on a connected socket (closed afterwards): proves this is a Docker API
    socket; returns its ``Api-Version`` header."""
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, _http_request("GET", "/_ping", [("Connection", "close")]))
        status, reason, headers = _parse_http_head(await _read_http_head(loop, sock))
    finally:
        sock.close()
    if status != 200:
        raise _ConnectFailed(f"GET /_ping answered {status} {reason}; not a Docker API socket?")
    return headers.get("api-version")


async def docker_hijack(
    docker_socket: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = 10.0,
) -> socket.socket:
    """Open a hijacked Docker API connection (``/grpc`` or ``/session``).

    Sends ``POST path HTTP/1.1`` with ``Connection: Upgrade``, ``Upgrade: h2c``,
    ``Content-Length: 0`` and ``headers`` (for ``/session``: the ``X-Docker-Expose-Session-*``
    headers, one ``X-Docker-Expose-Session-Grpc-Method`` per method) on the unix socket
    ``docker_socket`` (a path, e.g. :attr:`Connection.docker_socket`), checks for
    ``101 Switching Protocols`` and returns the connected, non-blocking socket positioned at
    the first HTTP/2 byte.  For ``/grpc`` the caller is the HTTP/2 client; for ``/session``
    dockerd is the client, so serve it with e.g. ``loop.connect_accepted_socket(factory, sock)``.
    The caller owns (and must close) the socket.

    Raises :class:`DaemonUnreachableError` if the socket cannot be reached, does not answer
    within ``timeout`` seconds or refuses the upgrade; ``ValueError`` for a header containing
    CR/LF.
    """
    address = str(Address("docker", path=docker_socket))
    _http_request("POST", path, headers)  # validate before dialing: ValueError, not unreachable
    try:
        async with asyncio.timeout(timeout):
            return await _hijack(docker_socket, path, headers)
    except _ConnectFailed as e:
        if e.status is not None:
            raise UpgradeRefusedError(address, e.reason, e.status) from None
        raise DaemonUnreachableError(address, e.reason) from None
    except TimeoutError:
        raise DaemonUnreachableError(address, f"no answer to POST {path} within {timeout:g}s") from None
    except OSError as e:
        raise DaemonUnreachableError(address, _describe_os_error(e)) from e


# --------------------------------------------------------------------------------------------
# Connections


@dataclass(eq=False)
class Connection:
    """An open, probed gRPC connection to a BuildKit daemon.

    ``channel`` is ready for the generated stubs (``ControlStub(conn.channel)``) and decodes
    error details (:mod:`llblib_async._errors_grpc`).  ``address`` is the address actually
    used, in canonical form (``docker://`` resolved to ``docker+unix:///...``); ``tried``
    lists every candidate address considered, in order, ending with ``address``.
    ``is_moby`` is true for the BuildKit embedded in dockerd (address kind ``docker``, or a
    worker with id ``moby``); ``docker_api_version`` is the Docker API version (``"1.41"``)
    and ``docker_socket`` the Docker socket path for Docker connections, else ``None``.
    ``workers`` holds the ``WorkerRecord``s of the connect-time ``ListWorkers`` probe.

    If the connection drops, calls in flight fail (``StreamTerminatedError``, see
    :func:`~llblib_async._errors_grpc.translate_grpc_error`) and grpclib re-dials the same
    address on the next call (for Docker: a fresh ``/grpc`` upgrade), each dial bounded by
    the ``timeout`` given to :func:`open_connection`.
    """

    channel: Channel
    address: str
    is_moby: bool
    tried: list[str] = field(default_factory=list)
    docker_api_version: str | None = None
    docker_socket: str | None = None
    workers: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        """Close the connection; in-flight calls fail with a stream/connection error."""
        self.channel.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_connection(
    address: str | Address | None = None,
    *,
    tls: TLSConfig | None = None,
    timeout: float = 10.0,
) -> Connection:
    """Connect to a BuildKit daemon and check that it answers ``Control.ListWorkers``.

    ``address``: see the module docstring; ``None`` resolves ``$BUILDKIT_HOST``, then the
    default buildkitd socket(s), then the Docker daemon.  ``tls`` is only valid with a
    ``tcp://`` address.  ``timeout`` bounds the whole call, every candidate included.

    Raises :class:`AddressError` for a malformed address (also from ``$BUILDKIT_HOST``), and
    :class:`DaemonUnreachableError` (``address``, ``reason``, ``tried``) when no candidate
    answered as a BuildKit daemon in time.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    candidates: list[tuple[Address, str | None]]
    if address is None:
        candidates = _default_candidates(tls)
    else:
        addr = address if isinstance(address, Address) else parse_address(address)
        if tls is not None and addr.scheme != "tcp":
            raise AddressError(str(address), "TLS settings need a tcp:// address")
        candidates = [(_resolve_docker(addr, str(address)), None)]

    tried: list[str] = []
    reasons: list[str] = []
    for cand, skipped in candidates:
        tried.append(str(cand))
        if skipped is not None:
            reasons.append(skipped)
            continue
        try:
            conn = await _connect(cand, tls, budget=timeout, deadline=deadline)
        except _ConnectFailed as e:
            reasons.append(e.reason)
            continue
        conn.tried = tried
        return conn

    if len(tried) == 1:
        reason = reasons[0]
    else:
        reason = "no BuildKit daemon found (set BUILDKIT_HOST or pass an address): " + "; ".join(
            f"{a}: {r}" for a, r in zip(tried, reasons, strict=True)
        )
    raise DaemonUnreachableError(tried[-1], reason, tried)


def _resolve_docker(addr: Address, original: str) -> Address:
    """``docker://`` -> the socket from ``$DOCKER_HOST`` or the default one."""
    if addr.scheme != "docker" or addr.path is not None:
        return addr
    path, problem = _docker_host_socket()
    if path is None:
        raise AddressError(original, problem or "no Docker socket")
    return Address("docker", path=path)


def _docker_host_socket() -> tuple[str | None, str | None]:
    """The Docker socket the docker CLI would use: ``$DOCKER_HOST`` or the default."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        # Docker contexts (DOCKER_CONTEXT, ~/.docker/config.json) are not consulted.
        return DEFAULT_DOCKER_SOCKET, None
    if not host.startswith("unix://"):
        return None, f"DOCKER_HOST={host!r} is not a unix:// socket; only local Docker daemons are supported"
    try:
        return _parse_socket_path(host[len("unix://") :], lambda r: AddressError(host, r)), None
    except AddressError as e:
        return None, f"DOCKER_HOST: {e.reason}"


def _default_candidates(tls: TLSConfig | None) -> list[tuple[Address, str | None]]:
    """Candidates for ``address=None``, each with a reason when it is skipped without dialing."""
    env = os.environ.get("BUILDKIT_HOST", "")
    if env:
        try:
            addr = parse_address(env)
        except AddressError as e:
            raise AddressError(env, f"from $BUILDKIT_HOST: {e.reason}") from None
        if tls is not None and addr.scheme != "tcp":
            raise AddressError(env, "TLS settings need a tcp:// address ($BUILDKIT_HOST)")
        return [(_resolve_docker(addr, env), None)]
    if tls is not None:
        raise AddressError("", "TLS settings need a tcp:// address: pass one or set $BUILDKIT_HOST")

    out: list[tuple[Address, str | None]] = []

    def socket_candidate(addr: Address) -> None:
        assert addr.path is not None
        out.append((addr, None if os.path.exists(addr.path) else "no such socket"))

    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.geteuid() != 0:
        # Rootless buildkitd's socket (BuildKit's appdefaults.UserAddress).
        rootless = os.path.join(xdg.split(":")[0], "buildkit", "buildkitd.sock")
        if rootless.startswith("/"):
            socket_candidate(Address("unix", path=rootless))
    socket_candidate(Address("unix", path=DEFAULT_BUILDKITD_SOCKET))
    docker_path, problem = _docker_host_socket()
    if docker_path is None:
        out.append((Address("docker"), problem))
    else:
        socket_candidate(Address("docker", path=docker_path))
    return out


#: Send buffer asked for on unix sockets to the daemon (the kernel caps it at
#: ``net.core.wmem_max``). On a unix socket the sender's buffer is all the data in
#: flight: with the default ~208 KiB a 1 MiB session message took five socket writes,
#: each waiting for the event loop to get round to the next, and the daemon idled in
#: between (upload of 256 MiB: 1.5 s -> 1.0 s with 4 MiB). TCP keeps the kernel's
#: autotuning, which setting SO_SNDBUF would switch off.
UNIX_SNDBUF = 4 * 1024 * 1024


def _tune_unix_socket(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # best effort
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < UNIX_SNDBUF:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SNDBUF)


def _make_dialer(addr: Address, ssl_context: ssl.SSLContext | None, server_name: str | None) -> Dialer:
    loop = asyncio.get_running_loop()
    if addr.scheme == "unix":
        assert addr.path is not None
        path = addr.path

        async def dial_unix(factory: ProtocolFactory) -> H2Protocol:
            transport, proto = await loop.create_unix_connection(factory, path)
            _tune_unix_socket(transport)
            return proto

        return dial_unix

    if addr.scheme == "docker":
        assert addr.path is not None
        docker_path = addr.path

        async def dial_docker(factory: ProtocolFactory) -> H2Protocol:
            sock = await _hijack(docker_path, "/grpc", ())
            try:
                transport, proto = await loop.create_unix_connection(factory, sock=sock)
                _tune_unix_socket(transport)
            except BaseException:
                sock.close()
                raise
            return proto

        return dial_docker

    assert addr.host is not None
    assert addr.port is not None
    host, port = addr.host, addr.port

    async def dial_tcp(factory: ProtocolFactory) -> H2Protocol:
        transport, proto = await loop.create_connection(
            factory,
            host,
            port,
            ssl=ssl_context,
            server_hostname=(server_name or host) if ssl_context is not None else None,
        )
        if ssl_context is not None:
            ssl_obj = transport.get_extra_info("ssl_object")
            alpn = ssl_obj.selected_alpn_protocol() if ssl_obj is not None else None
            # None = server does no ALPN (tolerated); anything else cannot carry gRPC.
            if alpn not in (None, "h2"):
                transport.close()
                raise _ConnectFailed(f"TLS server negotiated {alpn!r} instead of HTTP/2 (ALPN h2)")
        return proto

    return dial_tcp


async def _connect(addr: Address, tls: TLSConfig | None, *, budget: float, deadline: float) -> Connection:
    """One candidate: dial, probe with ListWorkers; raises ``_ConnectFailed`` with a reason."""
    ssl_context: ssl.SSLContext | None = None
    if addr.scheme == "tcp" and tls is not None:
        try:
            ssl_context = tls.ssl_context()
        except (OSError, ssl.SSLError) as e:
            problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise _ConnectFailed(f"cannot load the TLS files of {tls}: {problem}") from e

    phase = "connecting"
    dial = _make_dialer(addr, ssl_context, tls.server_name if tls else None)

    lost: list[BaseException] = []  # why the transport died, see _instrumented()

    async def tracked_dial(factory: ProtocolFactory) -> H2Protocol:
        nonlocal phase
        phase = "connecting" if addr.scheme != "docker" else "upgrading POST /grpc to HTTP/2"
        proto = await dial(lambda: _instrumented(factory, lost))
        phase = "waiting for a gRPC answer to ListWorkers"
        return proto

    if addr.scheme == "tcp":
        assert addr.host is not None
        assert addr.port is not None
        authority = ((tls.server_name if tls else None) or addr.host, addr.port)
    else:
        authority = ("localhost", 80)  # BuildKit ignores :authority on sockets
    channel: Channel | None = None
    try:
        async with asyncio.timeout_at(deadline):
            api_version: str | None = None
            if addr.scheme == "docker":
                assert addr.path is not None
                ping_sock = await _unix_socket(asyncio.get_running_loop(), addr.path)
                phase = "asking the Docker API for its version (GET /_ping)"
                api_version = await _docker_ping(ping_sock)
            channel = _DialChannel(
                tracked_dial, dial_timeout=budget, authority=authority, ssl_context=ssl_context
            )
            reply = await control.ControlStub(channel).list_workers(control.ListWorkersRequest())
    except _ConnectFailed:
        _close_quietly(channel)
        raise
    except TimeoutError:
        _close_quietly(channel)
        raise _ConnectFailed(f"no answer within {budget:g}s while {phase}") from None
    except GRPCError as e:
        _close_quietly(channel)
        hint = "; not a BuildKit daemon?" if e.status in (Status.UNIMPLEMENTED, Status.UNKNOWN) else ""
        raise _ConnectFailed(f"ListWorkers failed: {e.status.name}: {e.message or ''}{hint}") from e
    except StreamTerminatedError as e:
        _close_quietly(channel)
        why = _describe_os_error(lost[0]) if lost else str(e)
        if addr.scheme == "tcp" and tls is None:
            hint = "not an HTTP/2 gRPC server, or does it need TLS?"
        elif addr.scheme == "tcp" and tls is not None and tls.cert is None:
            hint = "does the daemon require a client certificate (TLSConfig cert/key)?"
        else:
            hint = "not an HTTP/2 gRPC server?"
        raise _ConnectFailed(f"connection closed while {phase} ({why}); {hint}") from e
    except (ProtocolError, h2.exceptions.ProtocolError) as e:
        _close_quietly(channel)
        raise _ConnectFailed(f"HTTP/2 protocol error while {phase}: {e}") from e
    except OSError as e:
        _close_quietly(channel)
        reason = _describe_os_error(e)
        if phase != "connecting":
            reason += f" while {phase}"
        if phase.startswith("asking the Docker API"):
            reason += "; not a Docker API socket?"
        raise _ConnectFailed(reason) from e
    except BaseException:
        _close_quietly(channel)
        raise

    workers = list(reply.record)
    return Connection(
        channel=channel,
        address=str(addr),
        is_moby=addr.scheme == "docker" or any(w.id == "moby" for w in workers),
        docker_api_version=api_version,
        docker_socket=addr.path if addr.scheme == "docker" else None,
        workers=workers,
    )


class _NotHTTP2Error(ConnectionError):
    """The peer answered our HTTP/2 connection preface in HTTP/1.x."""


class _CoalescingTransport(asyncio.Transport):
    """The socket transport as grpclib's protocol sees it: one ``write`` per loop iteration.

    grpclib writes each HTTP/2 operation on its own (a message, every flush after the
    frames it received: PING and SETTINGS acks, WINDOW_UPDATEs), and asyncio turns
    every write into a ``send()`` when its buffer is empty. During a session that is
    thousands of small sends, each waking the daemon, whose grpc-go answers many of
    them with a BDP PING plus WINDOW_UPDATE of its own (one more send from us). Here
    what is written during one event-loop iteration is queued and leaves as one write
    (scheduled with ``call_soon``, so before any I/O wait); ``close`` flushes first.
    Backpressure is untouched: the socket transport still pauses the protocol itself,
    and at most one iteration's writes wait here.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._loop = asyncio.get_running_loop()
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._pending.append(data if isinstance(data, bytes) else bytes(data))
            self._queued(len(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        n = 0
        for data in list_of_data:
            if not isinstance(data, bytes) and not (isinstance(data, memoryview) and data.readonly):
                data = bytes(data)  # a mutable buffer may change before the flush
            if data:
                self._pending.append(data)
                n += len(data)
        if n:
            self._queued(n)

    def _queued(self, n: int) -> None:
        self._pending_size += n
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending, self._pending_size = self._pending, [], 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._pending_size = [], 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()


def _instrumented(factory: ProtocolFactory, lost: list[BaseException]) -> H2Protocol:
    """``factory()``, with two diagnostics grpclib lacks, hooked on the (public) asyncio
    ``Protocol`` callbacks of the instance:

    * the exception the transport dies with is appended to ``lost``: grpclib only tells the
      call "Connection lost", yet that exception is often the only diagnosis (a TLS 1.3
      server rejects a missing client certificate after the handshake, on the first read);
    * an HTTP/1.x answer closes the connection at once (recorded in ``lost``): h2 reads
      ``HTTP/1.1 ...`` as a frame header announcing a ~4.7 MB frame and waits for it, so
      the probe would otherwise hang until the timeout.
    """
    proto = factory()
    made, received, gone = proto.connection_made, proto.data_received, proto.connection_lost
    conn_transport: asyncio.BaseTransport | None = None
    first = True
    fast: list[Callable[[bytes], None]] = []

    def connection_made(transport: asyncio.BaseTransport) -> None:
        nonlocal conn_transport
        conn_transport = transport
        assert isinstance(transport, asyncio.Transport)
        made(_CoalescingTransport(transport))
        # the hot paths of _session (DATA frames serialized and parsed by hand)
        _use_fast_streams(proto.connection)
        receiver = _FastReceiver(proto, server=False, deliver=received)
        fast.append(receiver.data_received)

    def data_received(data: bytes) -> None:
        nonlocal first
        if first:
            first = False
            if data.startswith(b"HTTP/") and conn_transport is not None:
                status_line = data.split(b"\r\n", 1)[0][:80].decode("latin-1")
                lost.append(_NotHTTP2Error(f"the server answered in HTTP/1.x: {status_line!r}"))
                conn_transport.close()
                return
        (fast[0] if fast else received)(data)

    def connection_lost(exc: BaseException | None) -> None:
        if exc is not None:
            lost.append(exc)
        gone(exc)

    proto.connection_made = connection_made  # type: ignore[method-assign]
    proto.data_received = data_received  # type: ignore[method-assign]
    proto.connection_lost = connection_lost  # type: ignore[method-assign]
    return proto


def _close_quietly(channel: Channel | None) -> None:
    if channel is not None:
        channel.close()


def _describe_os_error(e: BaseException) -> str:
    """A short, human reason for a failed dial/handshake."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {e.verify_message or e.reason}"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, FileNotFoundError):
        return "no such socket file"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (nothing is listening)"
    if isinstance(e, PermissionError):
        return "permission denied (check the socket's owner/group)"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host: {e.strerror or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
