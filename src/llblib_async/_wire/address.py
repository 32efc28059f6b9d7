"""Daemon addresses: parsing, canonical form, and the defaults ``connect()`` tries.

Address forms accepted by :func:`parse_address`:

``unix:///abs/path.sock``
    buildkitd on a unix socket, gRPC over HTTP/2 with prior knowledge (h2c).
``tcp://host:port``, ``tcp://[::1]:port``
    buildkitd on TCP: plain h2c, or TLS (ALPN ``h2``) when a :class:`~.tls.TLSConfig` is given.
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

With no address, :func:`default_candidates` gives ``$BUILDKIT_HOST`` if set (and only that,
like ``buildctl``: an explicit choice must not silently fall back to another daemon);
otherwise, in order, the rootless socket ``$XDG_RUNTIME_DIR/buildkit/buildkitd.sock``
(non-root only), ``/run/buildkit/buildkitd.sock`` and the Docker daemon, marking sockets
that do not exist as skipped.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import AddressError
from .tls import TLSConfig

__all__ = [
    "DEFAULT_BUILDKITD_SOCKET",
    "DEFAULT_DOCKER_SOCKET",
    "Address",
    "default_candidates",
    "is_loopback_hostname",
    "parse_address",
    "resolve_docker",
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


def resolve_docker(addr: Address, original: str) -> Address:
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


def default_candidates(tls: TLSConfig | None) -> list[tuple[Address, str | None]]:
    """Candidates for ``address=None``, each with a reason when it is skipped without dialing."""
    env = os.environ.get("BUILDKIT_HOST", "")
    if env:
        try:
            addr = parse_address(env)
        except AddressError as e:
            raise AddressError(env, f"from $BUILDKIT_HOST: {e.reason}") from None
        if tls is not None and addr.scheme != "tcp":
            raise AddressError(env, "TLS settings need a tcp:// address ($BUILDKIT_HOST)")
        return [(resolve_docker(addr, env), None)]
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


def is_loopback_hostname(hostname: str) -> bool:
    """``localhost`` or a loopback IP address (a host name without port or brackets)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
