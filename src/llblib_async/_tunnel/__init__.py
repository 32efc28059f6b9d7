"""The session tunnel: the gRPC server a BuildKit session is, running inside a byte stream.

A map, bottom up:

* :mod:`.health` -- ``grpc.health.v1.Health/Check``, which every session serves;
* :mod:`.headers` -- the ``x-docker-expose-session-*`` headers that announce a session;
* :mod:`.grpc_server` -- grpclib's HTTP/2 server protocol for one connection, serving
  the merged methods of the :class:`~llblib_async.attachables.Attachable`\\ s;
* :mod:`.outbound` -- the fake ``asyncio.Transport`` that protocol writes into (a
  bounded queue: backpressure towards the handlers);
* :mod:`.handle` -- :class:`~.handle.SessionHandle`, a running session as its users
  see it (id, transport, why it ended, ``guard`` for calls that need it);
* :mod:`.server` -- :func:`~.server.serve_session`: reader and writer tasks between a
  :class:`~llblib_async._wire.pipes.BytePipe` and the protocol, and a clean shutdown;
* :mod:`.transports` -- what carries it: ``Control.Session`` or Docker's ``/session``
  hijack, and :func:`~.transports.open_client_session`, which picks one.

The bytes themselves (pipes, message codecs, HTTP/2 fast paths, the Docker upgrade)
are the wire layer's, :mod:`llblib_async._wire`.
"""
