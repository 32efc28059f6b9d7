"""The protobuf wire format, by hand: the one varint codec and the field encoders.

Every hand-written codec of the library builds on this module: LLB op bytes
(:mod:`llblib_async.llb._encode`, which must equal Go's deterministic marshal), fsutil
packets (:mod:`llblib_async._fsutil.wire`) and the session's ``BytesMessage``
(:mod:`.messages`). They exist because betterproto2's generic (de)serialization
costs tens of microseconds per message on hot paths (10k-op graphs, a packet per
small file, a message per session chunk); this module is the small part they share.

The encoders follow proto3 as Go writes it: zero scalars and empty strings and
bytes are left out, negative ``int32``/``int64`` are 10-byte two's-complement
varints, map entries are sorted by key (Go's ``Deterministic: true``) and always
carry both key and value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "WIRE_FIXED32",
    "WIRE_FIXED64",
    "WIRE_LEN",
    "WIRE_VARINT",
    "DecodeError",
    "bool_field",
    "bool_map",
    "bytes_field",
    "int_field",
    "iter_fields",
    "key",
    "len_field",
    "read_varint",
    "repeated_str",
    "skip_field",
    "str_field",
    "str_map",
    "varint",
]

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5

_U64 = 1 << 64


class DecodeError(ValueError):
    """Bytes that are not a well-formed protobuf message (truncated, unknown wire type)."""


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += _U64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Tags, lengths, small ints and -1 (Go's "unset" for timestamps, modes, indices) are most of
# what the codecs encode; a lookup is several times faster than encoding them again.
_CACHE: dict[int, bytes] = {i: _encode_varint(i) for i in range(-1, 1 << 14)}


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint; negatives as 64-bit two's complement (10 bytes)."""
    cached = _CACHE.get(value)
    return cached if cached is not None else _encode_varint(value)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``buf[pos:]`` and the position after it.

    Raises :class:`DecodeError` when it is truncated or longer than 64 bits.
    """
    result = shift = 0
    try:
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise DecodeError("varint longer than 64 bits")
    except IndexError:
        raise DecodeError("truncated varint") from None


def skip_field(buf: bytes | memoryview, pos: int, wire_type: int) -> int:
    """The position after the value of a field of ``wire_type`` starting at ``pos``."""
    if wire_type == WIRE_VARINT:
        return read_varint(buf, pos)[1]
    if wire_type == WIRE_FIXED64:
        end = pos + 8
    elif wire_type == WIRE_LEN:
        n, pos = read_varint(buf, pos)
        end = pos + n
    elif wire_type == WIRE_FIXED32:
        end = pos + 4
    else:
        raise DecodeError(f"unsupported wire type {wire_type}")
    if end > len(buf):
        raise DecodeError("truncated field")
    return end


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, start, end)`` of each top-level field of a message.

    For a varint field ``start:end`` spans the varint, for a length-delimited one
    its payload (without the length), for fixed-size ones the value bytes.
    """
    pos, n = 0, len(buf)
    while pos < n:
        tag, pos = read_varint(buf, pos)
        wire_type = tag & 7
        if wire_type == WIRE_LEN:
            length, start = read_varint(buf, pos)
            pos = start + length
            if pos > n:
                raise DecodeError("truncated field")
        else:
            start = pos
            pos = skip_field(buf, pos, wire_type)
        yield tag >> 3, wire_type, start, pos


def key(field: int, wire_type: int) -> bytes:
    """The tag that starts a field."""
    return varint((field << 3) | wire_type)


def len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or sub-message), written even if empty."""
    return key(field, WIRE_LEN) + varint(len(payload)) + payload


def bytes_field(field: int, value: bytes) -> bytes:
    """A proto3 ``bytes`` field: omitted when empty."""
    return len_field(field, value) if value else b""


def str_field(field: int, value: str) -> bytes:
    """A proto3 ``string`` field: omitted when empty."""
    return len_field(field, value.encode()) if value else b""


def int_field(field: int, value: int) -> bytes:
    """A proto3 ``int32``/``int64``/``uint32``/``uint64`` field: omitted when zero."""
    return key(field, WIRE_VARINT) + varint(value) if value else b""


def bool_field(field: int, value: bool) -> bytes:
    """A proto3 ``bool`` field: omitted when false."""
    return key(field, WIRE_VARINT) + b"\x01" if value else b""


def repeated_str(field: int, values: Iterable[str]) -> bytes:
    """A ``repeated string`` field (strings are never packed)."""
    return b"".join(len_field(field, v.encode()) for v in values)


def str_map(field: int, mapping: Mapping[str, str]) -> bytes:
    """A ``map<string,string>`` with entries sorted by key, as Go's deterministic marshal does."""
    return b"".join(
        len_field(field, len_field(1, k.encode()) + len_field(2, mapping[k].encode()))
        for k in sorted(mapping)
    )


def bool_map(field: int, mapping: Mapping[str, bool]) -> bytes:
    """A ``map<string,bool>`` with entries sorted by key (value ``false`` still written)."""
    return b"".join(
        len_field(
            field, len_field(1, k.encode()) + key(2, WIRE_VARINT) + (b"\x01" if mapping[k] else b"\x00")
        )
        for k in sorted(mapping)
    )
