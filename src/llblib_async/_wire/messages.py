"""gRPC message payloads that skip the generated classes: raw bytes, ``BytesMessage``, gRPC framing.

* :class:`RawMessage` -- a "message" that is its payload bytes, for handlers whose
  payload type depends on the call (FileSend: fsutil packets for a directory target,
  raw tar bytes for a file target) or that encode by hand;
* :class:`BytesMessage` -- ``moby.buildkit.v1.BytesMessage`` (``bytes data = 1``), the
  envelope of every chunk of the session byte stream, encoded by hand: betterproto2's
  generic (de)serialization costs tens of microseconds per message, this next to nothing;
* :class:`Parts` and :func:`grpc_prefix` -- a payload kept as a list of buffers and the
  5-byte gRPC message prefix, so the HTTP/2 fast paths (:mod:`.h2fast`) frame a payload
  without copying it into every layer's envelope.

All of them are "messages" to grpclib's ``ProtoCodec``: it calls ``FromString`` and
``SerializeToString``.
"""

from __future__ import annotations

import struct

from .protobuf import DecodeError, read_varint, skip_field, varint

__all__ = ["GRPC_PREFIX", "BytesMessage", "Parts", "RawMessage", "grpc_prefix"]


class RawMessage:
    """Pass-through "message" for grpclib's ``ProtoCodec``: the payload bytes as is."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def FromString(cls, data: bytes) -> RawMessage:  # grpclib's codec calls these names
        return cls(bytes(data))

    def SerializeToString(self) -> bytes:
        return self.data


class Parts:
    """A byte string kept as a list of immutable buffers, joined only once, when sent.

    What :meth:`.h2fast.FastStream.send_messages` frames, so a payload isn't copied into
    every layer's framing (an fsutil packet into its gRPC message, that into HTTP/2
    frames, those into the session's ``BytesMessage``, and again). Everything in
    ``parts`` must be ``bytes`` or read-only views of it.
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: list[bytes | memoryview], size: int) -> None:
        self.parts = parts
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


GRPC_PREFIX = struct.Struct(">BL")  # compressed flag, length


def grpc_prefix(size: int) -> bytes:
    """The 5-byte gRPC message prefix: not compressed, big-endian length."""
    return GRPC_PREFIX.pack(0, size)


_DATA_TAG = 0x0A  # field 1, length-delimited


class BytesMessage:
    """``moby.buildkit.v1.BytesMessage`` (``bytes data = 1``) encoded by hand.

    The wire format is the generated class's: field 1 as a length-delimited record,
    left out when empty (proto3); unknown fields are skipped.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @staticmethod
    def header(size: int) -> bytes:
        """The bytes before a payload of ``size`` bytes (then the payload is the message)."""
        return b"\x0a" + varint(size)

    @classmethod
    def FromString(cls, buf: bytes) -> BytesMessage:
        return cls(bytes(cls.payload(buf)))

    @classmethod
    def payload(cls, buf: bytes) -> bytes | memoryview:
        """``FromString(buf).data``, as a zero-copy view in the usual case."""
        n = len(buf)
        try:
            # fast path: the whole message is field 1 (what every sender produces)
            if n > 1 and buf[0] == _DATA_TAG:
                length, pos = read_varint(buf, 1)
                if pos + length == n:
                    return memoryview(buf)[pos:]
            data: bytes | memoryview = b""
            pos = 0
            while pos < n:
                tag, pos = read_varint(buf, pos)
                if tag == _DATA_TAG:
                    length, pos = read_varint(buf, pos)
                    data = memoryview(buf)[pos : pos + length]
                    pos += length
                else:
                    pos = skip_field(buf, pos, tag & 7)
            if pos != n:
                raise DecodeError("truncated field")
        except DecodeError as e:
            raise ValueError(f"BytesMessage: {e}") from None
        return data

    def SerializeToString(self) -> bytes:
        data = self.data
        if not data:
            return b""
        return self.header(len(data)) + data
