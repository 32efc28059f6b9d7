"""States backed by an already-marshaled graph: ``llb.from_definition`` (Go's ``llb.NewDefinitionOp``).

A Definition received from elsewhere — a frontend's result, a file written by
``buildctl``/``Definition.to_bytes()``, another process — becomes a State whose
ops are the Definition's op bytes, verbatim.  Marshaling it (alone or with new
ops built on top) emits exactly those bytes, so digests and cache keys are the
original ones; each op also keeps its metadata.

Source maps (``Definition.source``: where each op comes from in a Dockerfile) are
carried over, so errors of the ops still point at the source. What is not carried
over: metadata fields this library does not model (``linux_resources``
raises; a cap listed as ``false`` becomes absent).  ``local://`` sources keep
their host directory only when importing an :class:`~llblib_async.llb.Definition`
that lists it in ``locals``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .._pb import pb
from .._wire.protobuf import WIRE_LEN, WIRE_VARINT, DecodeError, iter_fields, read_varint
from ..errors import BuildKitError, SourceLocation
from .marshal import Definition
from .platform import Platform
from .state import State
from .vertex import MarshalContext, OpMetadata, Output, ProgressGroup, Vertex

__all__ = ["ImportedOp", "InvalidDefinitionError", "from_definition"]


class InvalidDefinitionError(BuildKitError, ValueError):
    """The bytes or message given to :func:`from_definition` are not a usable LLB Definition."""


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ImportedOp(Vertex):
    """One op of an imported Definition: its original bytes and metadata, and its inputs as vertices."""

    data: bytes
    digest: str
    metadata: OpMetadata
    inputs: tuple[Output, ...]
    local_dirs: tuple[tuple[str, Path], ...] = ()
    source_locations: tuple[SourceLocation, ...] = ()

    def _inputs(self) -> tuple[Output, ...]:
        return self.inputs

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        # Like Go's DefinitionOp.Marshal: the bytes as received, whatever the marshal context.
        return self.data, self.metadata

    def _local_dirs(self) -> Iterable[tuple[str, Path]]:
        return self.local_dirs

    def _source_locations(self) -> Iterable[SourceLocation]:
        return self.source_locations

    def __repr__(self) -> str:
        return f"<ImportedOp {self.digest[:19]}>"


class _ParsedOp(NamedTuple):
    inputs: tuple[tuple[str, int], ...]
    platform: bytes | None
    source_identifier: str | None


def _parse_op(data: bytes) -> _ParsedOp:
    """What importing needs from a ``pb.Op``: inputs, platform bytes, source identifier.

    A hand-rolled reader over :func:`~llblib_async._wire.protobuf.iter_fields`:
    parsing whole ops with betterproto would be several times slower on 10k-op
    graphs, and only three fields matter here.  Malformed bytes raise
    :class:`InvalidDefinitionError` (``"truncated varint in op"``…).
    """
    inputs: list[tuple[str, int]] = []
    platform: bytes | None = None
    identifier: str | None = None
    try:
        for field, wire, start, end in iter_fields(data):
            if wire != WIRE_LEN:
                continue
            if field == 1:  # Input{digest=1, index=2}
                value = data[start:end]
                digest, index = "", 0
                for f, w, s, e in iter_fields(value):
                    if f == 1 and w == WIRE_LEN:
                        digest = value[s:e].decode()
                    elif f == 2 and w == WIRE_VARINT:
                        index = read_varint(value, s)[0]
                        if index >= 1 << 63:
                            index -= 1 << 64
                inputs.append((digest, index))
            elif field == 10:
                platform = data[start:end]
            elif field == 3:  # SourceOp{identifier=1, attrs=2}
                value = data[start:end]
                for f, w, s, e in iter_fields(value):
                    if f == 1 and w == WIRE_LEN:
                        identifier = value[s:e].decode()
    except DecodeError as err:
        raise InvalidDefinitionError(f"{err} in op") from err
    return _ParsedOp(tuple(inputs), platform, identifier)


def _metadata_from_pb(meta: pb.OpMetadata, digest: str) -> OpMetadata:
    if meta.linux_resources is not None:
        raise InvalidDefinitionError(
            f"op {digest} has linux_resources metadata, which llblib_async.llb does not support yet"
        )
    pg = meta.progress_group
    return OpMetadata(
        ignore_cache=meta.ignore_cache,
        description=tuple(sorted(meta.description.items())),
        caps=frozenset(c for c, on in meta.caps.items() if on),
        export_cache=meta.export_cache.value if meta.export_cache is not None else None,
        progress_group=None if pg is None else ProgressGroup(pg.id, pg.name, pg.weak),
    )


def _sources_from_pb(source: pb.Source | None) -> dict[str, tuple[SourceLocation, ...]]:
    """``pb.Source`` as :class:`SourceLocation` tuples per op digest (bad indices are skipped)."""
    if source is None:
        return {}
    out: dict[str, tuple[SourceLocation, ...]] = {}
    for digest, locations in source.locations.items():
        places = []
        for loc in locations.locations:
            if not 0 <= loc.source_index < len(source.infos):
                continue
            places.append(SourceLocation.from_pb(source.infos[loc.source_index], loc.ranges))
        if places:
            out[digest] = tuple(places)
    return out


def _platform(data: bytes) -> Platform:
    p = pb.Platform.parse(data)
    # Go's NewState stores the op's platform normalized (ensurePlatform -> platforms.Normalize).
    return Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features)).normalize()


def from_definition(definition: Definition | pb.Definition | bytes | bytearray | memoryview) -> State:
    """A State whose graph is ``definition``'s ops, byte for byte (Go's ``llb.NewDefinitionOp``).

    ``definition`` is an :class:`~llblib_async.llb.Definition`, a
    ``pb.Definition`` message or its serialized bytes.  The State points at the
    output the Definition's terminal op points at and has that op's platform
    (if it has one); marshaling it reproduces the original ops, and ops built
    on it refer to them by their original digests.  An empty Definition gives
    ``scratch()``.  Raises :class:`InvalidDefinitionError` for a malformed
    Definition (unparsable ops, a missing input op or metadata entry, a cycle,
    no terminal op).
    """
    locals_: Mapping[str, Path] = {}
    sources: Mapping[str, tuple[SourceLocation, ...]] = {}
    if isinstance(definition, Definition):
        ops = list(definition.ops)
        metadata = dict(definition.metadata)
        locals_ = definition.locals
        sources = definition.sources
    else:
        if isinstance(definition, bytes | bytearray | memoryview):
            try:
                definition = pb.Definition.parse(bytes(definition))
            except Exception as err:
                raise InvalidDefinitionError(f"not a serialized pb.Definition: {err}") from err
        ops = list(definition.def_)
        metadata = {d: _metadata_from_pb(m, d) for d, m in definition.metadata.items()}
        sources = _sources_from_pb(definition.source)
    if not ops:
        return State()

    by_digest: dict[str, bytes] = {}
    for data in ops:
        by_digest["sha256:" + hashlib.sha256(data).hexdigest()] = data
    terminal = _parse_op(ops[-1])
    if not terminal.inputs:
        raise InvalidDefinitionError("invalid definition with no inputs on last vertex")
    head_digest, head_index = terminal.inputs[0]
    if head_index < 0:
        raise InvalidDefinitionError("invalid definition op with invalid index")

    parsed: dict[str, _ParsedOp] = {}
    built: dict[str, ImportedOp] = {}
    on_path: set[str] = set()
    stack: list[tuple[str, bool]] = [(head_digest, False)]
    while stack:
        digest, expanded = stack.pop()
        if digest in built:
            continue
        if expanded:
            op = parsed[digest]
            local_dirs: tuple[tuple[str, Path], ...] = ()
            if op.source_identifier is not None and op.source_identifier.startswith("local://"):
                name = op.source_identifier.removeprefix("local://")
                if name in locals_:
                    local_dirs = ((name, locals_[name]),)
            built[digest] = ImportedOp(
                data=by_digest[digest],
                digest=digest,
                metadata=metadata[digest],
                inputs=tuple(Output(built[d], i) for d, i in op.inputs),
                local_dirs=local_dirs,
                source_locations=sources.get(digest, ()),
            )
            on_path.discard(digest)
            continue
        if digest in on_path:
            raise InvalidDefinitionError(f"op {digest} depends on itself")
        if digest not in by_digest:
            raise InvalidDefinitionError(f"invalid definition op with unknown op {digest!r}")
        if digest not in metadata:
            raise InvalidDefinitionError(f"invalid definition op with unknown metas {digest!r}")
        op = parsed[digest] = _parse_op(by_digest[digest])
        for _, index in op.inputs:
            if index < 0:
                raise InvalidDefinitionError(f"op {digest} has an input with a negative index")
        on_path.add(digest)
        stack.append((digest, True))
        stack.extend((d, False) for d, _ in reversed(op.inputs) if d not in built)

    head = built[head_digest]
    head_platform = parsed[head_digest].platform
    return State(
        output=Output(head, head_index),
        platform=None if head_platform is None else _platform(head_platform),
    )
