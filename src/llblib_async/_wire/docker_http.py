"""The Docker API's HTTP/1.1 upgrade: ``POST /grpc`` and ``POST /session`` hijacked to HTTP/2.

A Docker daemon serves its embedded BuildKit on its API socket: ``POST /grpc`` with
``Upgrade: h2c`` turns the connection into an HTTP/2 gRPC connection to BuildKit's
``Control`` and ``LLBBridge`` services (spec §8.1), and ``POST /session`` into the
session, with dockerd as the HTTP/2 client. :func:`docker_hijack` does the HTTP/1.1
part and hands back the socket positioned at the first HTTP/2 byte; :func:`docker_ping`
proves a socket is a Docker API socket at all.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Sequence

from ..errors import DaemonUnreachableError, UpgradeRefusedError
from .address import Address
from .dial_failure import ConnectFailed, describe_os_error

__all__ = ["docker_hijack", "docker_ping", "hijack", "unix_socket"]

_STATUS_RE = re.compile(r"[0-9]{3}")
# Bound on an HTTP/1.1 response head from the Docker API; real ones are ~200 bytes.
_MAX_HTTP_HEAD = 64 * 1024
_MAX_ERROR_BODY = 4096
_USER_AGENT = "llblib-async"


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
            raise ConnectFailed("HTTP response header too large; not a Docker API socket?")
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            got = f" (got {bytes(buf[:60])!r})" if buf else ""
            raise ConnectFailed(f"connection closed before an HTTP response{got}; not a Docker API socket?")
        buf += chunk
    return bytes(buf)


def _parse_http_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _STATUS_RE.fullmatch(parts[1]):
        raise ConnectFailed(f"not an HTTP/1.1 response: {lines[0][:60]!r}; not a Docker API socket?")
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


async def unix_socket(loop: asyncio.AbstractEventLoop, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def hijack(docker_socket: str, path: str, headers: Sequence[tuple[str, str]]) -> socket.socket:
    """``POST path`` with ``Upgrade: h2c`` on the Docker socket; the socket after the ``101``."""
    request = _http_request(
        "POST", path, [("Connection", "Upgrade"), ("Upgrade", "h2c"), ("Content-Length", "0"), *headers]
    )
    loop = asyncio.get_running_loop()
    sock = await unix_socket(loop, docker_socket)
    try:
        await loop.sock_sendall(sock, request)
        status, reason, resp_headers = _parse_http_head(await _read_http_head(loop, sock))
        if status != 101:
            body = await _read_error_body(loop, sock, resp_headers)
            message = f"POST {path} answered {status} {reason}" + (f": {body}" if body else "")
            raise ConnectFailed(message, status)
    except BaseException:
        sock.close()
        raise
    return sock


async def docker_ping(sock: socket.socket) -> str | None:
    """``GET /_ping`` on a connected socket (closed afterwards): proves this is a Docker API
    socket; returns its ``Api-Version`` header."""
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, _http_request("GET", "/_ping", [("Connection", "close")]))
        status, reason, headers = _parse_http_head(await _read_http_head(loop, sock))
    finally:
        sock.close()
    if status != 200:
        raise ConnectFailed(f"GET /_ping answered {status} {reason}; not a Docker API socket?")
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
            return await hijack(docker_socket, path, headers)
    except ConnectFailed as e:
        if e.status is not None:
            raise UpgradeRefusedError(address, e.reason, e.status) from None
        raise DaemonUnreachableError(address, e.reason) from None
    except TimeoutError:
        raise DaemonUnreachableError(address, f"no answer to POST {path} within {timeout:g}s") from None
    except OSError as e:
        raise DaemonUnreachableError(address, describe_os_error(e)) from e
