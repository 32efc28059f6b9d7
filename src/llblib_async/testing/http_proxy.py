"""A tiny HTTP proxy on 127.0.0.1 for tests: ``CONNECT`` tunnels and plain forwarding.

:func:`serve_http_proxy` runs it on the calling event loop (``async with``), records
every request it gets (:attr:`HttpProxy.requests`: ``("CONNECT", "host:port")`` or
``("GET", "http://host:port/path")``) and resolves host names through ``hosts``
before its own DNS, so a test can name a loopback server ``registry.test``: a client
that does not go through the proxy cannot even resolve that name, which shows that a
request was proxied, or that ``NO_PROXY`` bypassed the proxy.

:func:`serve_tls_front` terminates TLS for a plain-HTTP server (the registry
fixtures speak plain HTTP) with a throw-away certificate for the given names,
made with the ``openssl`` CLI, so ``https://`` requests (which proxies carry
with ``CONNECT``) can be tested too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import _proc

__all__ = ["HttpProxy", "TlsFront", "serve_http_proxy", "serve_tls_front"]

OPENSSL = "/usr/bin/openssl"
_MAX_HEAD = 64 << 10


@dataclass
class HttpProxy:
    """A running proxy: :attr:`url` to put in ``HTTP(S)_PROXY``; what it was asked."""

    port: int
    hosts: Mapping[str, str]
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _resolve(self, host: str) -> str:
        return self.hosts.get(host.lower(), host)


class _Connections:
    """The handler tasks of a test server, so that closing it ends them too.

    ``asyncio.Server.close()`` stops accepting but leaves open connections' handlers
    running (3.11); a handler still waiting when the loop ends is garbage-collected
    mid-``await`` and pytest reports it. Closing cancels and awaits them instead.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def track(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handler(reader, writer)
            finally:
                self._tasks.discard(task)

        return tracked

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = authority.rpartition(":")
    return (host, int(port)) if sep else (authority, default_port)


async def _handle(proxy: HttpProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    upstream: asyncio.StreamWriter | None = None
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        proxy.requests.append((method, target))
        if method == "CONNECT":
            host, port = _split_authority(target, 443)
            up_reader, upstream = await asyncio.open_connection(proxy._resolve(host), port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            if not target.startswith("http://"):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            authority, _, path = target.removeprefix("http://").partition("/")
            host, port = _split_authority(authority, 80)
            up_reader, upstream = await asyncio.open_connection(proxy._resolve(host), port)
            kept = [
                line
                for line in header_lines
                if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
            ]
            forwarded = [f"{method} /{path} {version}", *kept, "Connection: close", "", ""]
            upstream.write("\r\n".join(forwarded).encode("latin-1"))
            await upstream.drain()
        await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
    except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    finally:
        for w in (upstream, writer):
            if w is not None:
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


@contextlib.asynccontextmanager
async def serve_http_proxy(hosts: Mapping[str, str] | None = None) -> AsyncIterator[HttpProxy]:
    """Run a proxy on 127.0.0.1 (a free port) while the block runs.

    ``hosts`` maps host names to the addresses the proxy connects to instead.
    """
    proxy = HttpProxy(port=0, hosts={k.lower(): v for k, v in (hosts or {}).items()})
    connections = _Connections()
    server = await asyncio.start_server(
        connections.track(lambda r, w: _handle(proxy, r, w)), "127.0.0.1", 0, limit=_MAX_HEAD
    )
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield proxy
    finally:
        server.close()
        await connections.close()


@dataclass(frozen=True)
class TlsFront:
    """A TLS endpoint on 127.0.0.1:``port`` for a plain-HTTP server; clients trust
    :attr:`ca_file` (the self-signed certificate) via :meth:`client_context`."""

    port: int
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _certificate(workdir: Path, names: list[str]) -> tuple[Path, Path]:
    openssl = _proc.require_program(OPENSSL, "openssl", "the TLS test front")
    key, cert = workdir / "tls-front.key", workdir / "tls-front.pem"
    san = ",".join(f"DNS:{n}" for n in names)
    done = subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={names[0]}",
            "-addext", f"subjectAltName={san}",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"openssl req failed: {done.stderr.decode(errors='replace')}")
    return key, cert


@contextlib.asynccontextmanager
async def serve_tls_front(upstream: str, names: list[str], workdir: Path) -> AsyncIterator[TlsFront]:
    """Terminate TLS (a certificate for ``names``) on a free port and pipe the plain
    bytes to ``upstream`` (``host:port``) while the block runs."""
    key, cert = await asyncio.to_thread(_certificate, workdir, names)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    host, port = _split_authority(upstream, 80)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up: asyncio.StreamWriter | None = None
        try:
            up_reader, up = await asyncio.open_connection(host, port)
            await asyncio.gather(_pipe(reader, up), _pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (up, writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                        await w.wait_closed()

    connections = _Connections()
    server = await asyncio.start_server(connections.track(handle), "127.0.0.1", 0, ssl=context)
    try:
        async with server:
            yield TlsFront(port=server.sockets[0].getsockname()[1], ca_file=cert)
    finally:
        server.close()
        await connections.close()
