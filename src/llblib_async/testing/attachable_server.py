"""Serve one session attachable on a private unix socket, without a daemon.

For unit tests of an attachable's gRPC methods: a stub on the yielded channel plays
the daemon's side of the session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpclib.client
import grpclib.server
from grpclib.encoding.proto import ProtoCodec

from ..attachables.attachable import Attachable

__all__ = ["serve_attachable"]


@contextlib.asynccontextmanager
async def serve_attachable(
    attachable: Attachable, socket_path: Path
) -> AsyncIterator[grpclib.client.Channel]:
    """Serve ``attachable`` on a grpclib server at ``socket_path``; yield a channel to it."""
    server = grpclib.server.Server([attachable], codec=ProtoCodec())
    await server.start(path=str(socket_path))
    channel = grpclib.client.Channel(path=str(socket_path), codec=ProtoCodec())
    try:
        yield channel
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
