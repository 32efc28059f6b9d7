"""The wire layer: bytes on sockets and in gRPC messages, under the client and the session.

A map, bottom up (sans-IO first):

* :mod:`.protobuf` -- the protobuf wire format by hand: the one varint codec and the
  field encoders every hand-written codec builds on (LLB op bytes, fsutil packets);
* :mod:`.messages` -- payloads that skip the generated classes (raw bytes,
  ``BytesMessage``) and gRPC message framing;
* :mod:`.h2fast` -- HTTP/2 fast paths for DATA, WINDOW_UPDATE and PING on our own
  grpclib connections, installed per connection by the code that owns it;
* :mod:`.pipes` -- the byte pipes a session's HTTP/2 connection travels in;
* :mod:`.address`, :mod:`.tls` -- daemon addresses, the defaults ``connect()`` tries,
  TLS settings;
* :mod:`.docker_http` -- the Docker API's HTTP/1.1 upgrade (``/grpc``, ``/session``);
* :mod:`.dial`, :mod:`.dial_failure` -- the grpclib channel and its dialers, and why a
  dial failed;
* :mod:`.connection` -- :func:`~.connection.open_connection`: resolve, dial, probe;
* :mod:`.grpc_errors` -- BuildKit's gRPC error details, and gRPC failures as typed errors.

The session server on top of it is :mod:`llblib_async._tunnel`.
"""
