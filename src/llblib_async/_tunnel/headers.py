"""The headers that open a session: gRPC metadata of ``Control.Session``, HTTP headers of ``/session``.

The daemon learns a session's id, name, shared key and the methods it serves from
``x-docker-expose-session-*`` headers (BuildKit ``session.Manager``); the same headers,
in Go's canonical HTTP form, open Docker's ``/session`` hijack.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence

__all__ = ["canonical_headers", "session_headers"]


def _header_value(value: str) -> tuple[str, bool]:
    """Go's ``encodeHeaderValue``: URL-encode values grpc metadata can't carry."""
    if all(0x20 <= ord(c) <= 0x7E for c in value):
        return value, False
    return urllib.parse.quote_plus(value), True


def session_headers(
    session_id: str,
    *,
    methods: Iterable[str],
    shared_key: str = "",
    name: str = "",
    health_check_ms: int | None = None,
) -> list[tuple[str, str]]:
    """The ``x-docker-expose-session-*`` metadata that opens a session.

    One ``x-docker-expose-session-grpc-method`` entry per served method. Empty values
    are left out (grpclib refuses them and the daemon treats absent as empty). Also
    the headers of Docker's ``/session`` upgrade request. ``health_check_ms``
    (BuildKit >= v0.32, a test hook) makes the daemon check health at that interval
    (>= 1000) with that timeout, closing the session after one failure.
    """
    md: list[tuple[str, str]] = [("x-docker-expose-session-uuid", session_id)]
    if name:
        value, encoded = _header_value(name)
        md.append(("x-docker-expose-session-name", value))
    if shared_key:
        value, encoded = _header_value(shared_key)
        md.append(("x-docker-expose-session-sharedkey", value))
        if encoded:
            md.append(("x-docker-expose-session-sharedkey-encoded", "1"))
    md.extend(("x-docker-expose-session-grpc-method", m) for m in methods)
    if health_check_ms is not None:
        md.append(("x-buildkit-session-health-custom-timeout", str(int(health_check_ms))))
    return md


def _canonical_header(name: str) -> str:
    """Go's ``CanonicalHeaderKey``: ``x-docker-expose-session-uuid`` -> ``X-Docker-Expose-Session-Uuid``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def canonical_headers(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """:func:`session_headers` as the HTTP headers of Docker's ``POST /session``, in Go's
    canonical form (Go's server canonicalises them anyway; this is what the docker CLI sends)."""
    return [(_canonical_header(k), v) for k, v in metadata]
