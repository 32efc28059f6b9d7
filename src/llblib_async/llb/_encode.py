"""The LLB messages every op shares, encoded by hand as Go's deterministic marshal writes them.

BuildKit re-marshals every op with protobuf-go (``Deterministic: true``) and
re-hashes it, so the digests shown in progress, errors and history are those of
Go's bytes.  Two rules differ from betterproto2's output (spec §7.2): fields of a
``oneof`` are written *after* all regular fields, and map entries are sorted by
key.  Everything else is plain proto3, as the field encoders of
:mod:`llblib_async._wire.protobuf` (the one varint codec of the library) write
it: zero scalars and empty strings are omitted, a set sub-message is written
even when empty, a ``oneof`` scalar is written even when zero, negative
``int32``/``int64`` are 10-byte varints, and map entries always carry both key
and value.

This module only knows the messages shared by every op (``Op``, ``Input``,
``Platform``, ``OpMetadata``, ``Definition``) and the ``Op.op`` field numbers;
op-specific payloads are encoded next to the op that owns them, with the field
encoders of :mod:`llblib_async._wire.protobuf`.  It works on ``bytes`` and plain
values so that marshaling 10k-50k-op graphs stays cheap (no intermediate message
objects).  Named ``_encode`` rather than ``_wire`` so that it is not mistaken for
the top-level :mod:`llblib_async._wire` package it builds on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .._wire.protobuf import bool_field, int_field, len_field, repeated_str, str_field, str_map

# pb.Op field numbers of the ``op`` oneof.
OP_EXEC = 2
OP_SOURCE = 3
OP_FILE = 4
OP_BUILD = 5
OP_MERGE = 6
OP_DIFF = 7
OP_PASSTHROUGH = 8

_EMPTY_CONSTRAINTS = len_field(11, b"")


def encode_input(digest: str, index: int) -> bytes:
    """``pb.Input{digest, index}``."""
    return str_field(1, digest) + int_field(2, index)


def encode_platform(
    *, os: str, architecture: str, variant: str, os_version: str, os_features: Sequence[str]
) -> bytes:
    """``pb.Platform`` (field order: Architecture=1, OS=2, Variant=3, OSVersion=4, OSFeatures=5)."""
    return (
        str_field(1, architecture)
        + str_field(2, os)
        + str_field(3, variant)
        + str_field(4, os_version)
        + repeated_str(5, os_features)
    )


def encode_op(
    *,
    inputs: Sequence[bytes],
    platform: bytes | None,
    worker_filters: Sequence[str] = (),
    op_field: int,
    op_payload: bytes,
) -> bytes:
    """A complete ``pb.Op`` in Go order: inputs(1), platform(10), constraints(11), then the oneof.

    ``inputs`` are already-encoded ``pb.Input`` messages.  Go always sets
    ``constraints`` (an empty ``WorkerConstraints`` is still written as ``5a 00``);
    ``platform`` is only set on exec ops and platform-specific sources.
    """
    parts = [len_field(1, i) for i in inputs]
    if platform is not None:
        parts.append(len_field(10, platform))
    parts.append(len_field(11, repeated_str(1, worker_filters)) if worker_filters else _EMPTY_CONSTRAINTS)
    parts.append(len_field(op_field, op_payload))
    return b"".join(parts)


def encode_terminal(digest: str, index: int) -> bytes:
    """The terminal pseudo-op ``Op{inputs: [Input{digest, index}]}`` closing a Definition."""
    return len_field(1, encode_input(digest, index))


def encode_op_metadata(
    *,
    ignore_cache: bool,
    description: Mapping[str, str],
    export_cache: bool | None,
    caps: Iterable[str],
    progress_group: tuple[str, str, bool] | None = None,
) -> bytes:
    """``pb.OpMetadata`` (ignore_cache=1, description=2, export_cache=4, caps=5, progress_group=6).

    Maps sorted; ``progress_group`` is ``(id, name, weak)``, written (even when
    all empty) whenever it is set, like any set sub-message.
    """
    out = bool_field(1, ignore_cache) + str_map(2, description)
    if export_cache is not None:
        out += len_field(4, bool_field(1, export_cache))
    out += b"".join(len_field(5, len_field(1, c.encode()) + b"\x10\x01") for c in sorted(caps))
    if progress_group is not None:
        pg_id, pg_name, pg_weak = progress_group
        out += len_field(6, str_field(1, pg_id) + str_field(2, pg_name) + bool_field(3, pg_weak))
    return out


def encode_definition(
    *,
    ops: Sequence[bytes],
    metadata: Mapping[str, bytes],
    locations: Iterable[str] | None,
) -> bytes:
    """``pb.Definition`` with sorted maps.

    ``metadata`` maps a digest to already-encoded ``OpMetadata``; ``locations``
    are the digests that get an (empty) ``Locations`` entry in ``Source``, as Go's
    source-map collector adds one per marshaled vertex; ``None`` omits ``Source``
    (Go leaves it nil for an empty Definition).
    """
    parts = [len_field(1, op) for op in ops]
    parts.extend(len_field(2, len_field(1, d.encode()) + len_field(2, metadata[d])) for d in sorted(metadata))
    if locations is not None:
        source = b"".join(
            len_field(1, len_field(1, d.encode()) + len_field(2, b"")) for d in sorted(locations)
        )
        parts.append(len_field(3, source))
    return b"".join(parts)
