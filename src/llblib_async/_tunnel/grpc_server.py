"""The gRPC server side of a session: one grpclib HTTP/2 server protocol serving the attachables.

grpclib's ``Server`` normally listens on a socket and makes a protocol per accepted
connection; a session has exactly one connection, which arrives as a byte stream we
hold (:mod:`.server`), so :func:`new_server_protocol` makes that one protocol by hand.
:func:`collect_mapping` merges the attachables' methods and refuses two owners of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol

from .._wire.messages import RawMessage
from ..attachables.attachable import Attachable

__all__ = ["collect_mapping", "method_names", "new_server_protocol"]


def collect_mapping(attachables: Iterable[Attachable]) -> dict[str, grpclib.const.Handler]:
    """Merge the attachables' handlers (after the built-in health check)."""
    mapping: dict[str, grpclib.const.Handler] = {}
    owners: dict[str, Attachable] = {}
    for a in attachables:
        for path, handler in a.__mapping__().items():
            if path in owners:
                raise ValueError(f"session method {path} is served by both {owners[path]!r} and {a!r}")
            owners[path] = a
            mapping[path] = handler
    return mapping


class _Servable:
    """Adapter: a merged mapping as one grpclib ``IServable``."""

    def __init__(self, mapping: Mapping[str, grpclib.const.Handler]) -> None:
        self._mapping = dict(mapping)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return self._mapping


class _UnimplementedByDefault(dict[str, grpclib.const.Handler]):
    """Handler mapping answering unknown methods with a *proper* UNIMPLEMENTED.

    grpclib answers an unknown method with a bare trailers-only response lacking
    ``content-type``; grpc-go (the daemon's session client) then reports code
    Unknown ("malformed header: missing HTTP content-type"), not Unimplemented --
    and the daemon only treats Unimplemented as "the client doesn't provide this"
    (no credentials -> anonymous pull, no secret -> not found). A real handler that
    raises makes grpclib send a well-formed gRPC status instead.
    """

    def get(self, key: str, default: Any = None) -> Any:
        handler = super().get(key)
        if handler is not None:
            return handler

        async def unimplemented(stream: grpclib.server.Stream[Any, Any]) -> None:
            raise GRPCError(Status.UNIMPLEMENTED, f"unknown method {key}")

        return grpclib.const.Handler(
            unimplemented, grpclib.const.Cardinality.STREAM_STREAM, RawMessage, RawMessage
        )


def new_server_protocol(mapping: Mapping[str, grpclib.const.Handler]) -> H2Protocol:
    """An HTTP/2 gRPC server protocol for one connection -- the only private grpclib use.

    ``grpclib.server.Server`` normally creates these in ``loop.create_server``;
    ``Server._protocol_factory()`` (private, stable since grpclib 0.3, pinned to 0.4.9
    in pyproject) is the way to get one bound to our own fake transport. Before that,
    ``Server._mapping`` (the dict the request handler looks methods up in) is swapped
    for :class:`_UnimplementedByDefault`. The rest is public-ish API of the returned
    objects: ``H2Protocol.connection_made / data_received / connection_lost /
    pause_writing / resume_writing`` (asyncio's Protocol interface) and
    ``H2Protocol.handler.wait_closed()``.

    An explicit ``ProtoCodec`` (and no status-details codec) keeps grpclib from
    reaching for ``google.protobuf``, which this package does not depend on.
    """
    server = grpclib.server.Server([_Servable(mapping)], codec=ProtoCodec(), status_details_codec=None)
    server._mapping = _UnimplementedByDefault(server._mapping)
    return server._protocol_factory()


def method_names(attachables: Iterable[Attachable], *builtin: Attachable) -> list[str]:
    """Every method a session serving ``builtin`` and ``attachables`` announces, sorted."""
    return sorted({*collect_mapping([*builtin, *attachables])})
