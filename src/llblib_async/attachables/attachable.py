"""The :class:`Attachable` protocol: what a session service is.

A BuildKit session is a gRPC server the *client* runs (inside the ``Control.Session``
call, or on Docker's ``/session`` socket); the daemon calls into it for everything
only the client has -- local directories, exporter output, secrets, SSH agents and
forwarded sockets, registry credentials, content stores. Each such service is an
*attachable*: an object with grpclib's ``__mapping__()``, which names the gRPC methods
it serves and their handlers. Every method of every attachable is announced to the
daemon when the session opens (the daemon only calls methods it was told about), so
the set of attachables is fixed for the life of a session.

Writing one is writing a grpclib service by hand::

    import grpclib.const

    class Hello:
        def __mapping__(self) -> dict[str, grpclib.const.Handler]:
            return {
                "/example.Hello/Greet": grpclib.const.Handler(
                    self._greet, grpclib.const.Cardinality.UNARY_UNARY, Request, Reply
                )
            }

        async def _greet(self, stream) -> None:
            request = await stream.recv_message()
            await stream.send_message(Reply(text="hello " + request.name))

Pass it to ``Solver.add_attachable`` (or ``client.solve(..., attachables=[...])``);
:func:`llblib_async.testing.serve_attachable` unit-tests one without a daemon. Handlers
get grpclib's raw server ``Stream``, so they can read request metadata (the daemon
sends e.g. ``dir-name`` to FileSync, ``buildkit.ssh.id`` to the SSH forwarder). A
handler that raises ``grpclib.exceptions.GRPCError`` answers with that status; the
daemon treats ``UNIMPLEMENTED`` and ``NOT_FOUND`` as "the client does not provide
this". Two attachables of one session must not serve the same method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import grpclib.const

__all__ = ["Attachable"]


@runtime_checkable
class Attachable(Protocol):
    """A service served inside the session: grpclib's ``IServable`` protocol.

    ``__mapping__`` returns ``{"/pkg.Service/Method": grpclib.const.Handler}``; every
    key is announced to the daemon when the session opens.
    """

    def __mapping__(self) -> Mapping[str, grpclib.const.Handler]: ...
