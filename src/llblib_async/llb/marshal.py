"""Turning a State into a :class:`Definition` — the serialized graph BuildKit solves.

Follows Go's ``State.Marshal``: a depth-first walk that emits each op after its
inputs (in ``Inputs()`` order), drops ops whose bytes were already emitted,
merges metadata per digest, then appends the terminal pseudo-op
``Op{inputs: [head]}`` whose metadata carries the ``constraints``/``platform``
caps plus ``meta.*`` caps for features any op uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .._pb import pb
from ..errors import SourceLocation
from ._encode import encode_definition, encode_terminal
from .platform import Platform, default_platform
from .state import State
from .vertex import MarshalContext, OpMetadata, Vertex, ensure_marshaled, follow

__all__ = ["Definition", "digest", "marshal", "marshal_scope"]

# Marshal results of graphs that depend on a session (frontend results name the
# session's local directories) are memoised per scope; the request pipeline sets the
# session id. Outside a session the scope is empty.
_SCOPE: ContextVar[str] = ContextVar("llblib_async.llb.marshal_scope", default="")


@contextmanager
def marshal_scope(scope: str) -> Iterator[None]:
    """Marshal (and resolve lazy States) within ``scope`` (a session id) in this block.

    Lazy States, frontend States and the op bytes built on them are memoised per
    (platform, scope), so a frontend solved in one session is not reused in another.
    """
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


_TERMINAL_CAPS = frozenset({"constraints", "platform"})


@dataclass(frozen=True, slots=True)
class Definition:
    """A marshaled LLB graph, ready for ``SolveRequest.definition``.

    ``ops`` are the Go-identical op bytes (dependencies first, deduplicated, the
    terminal pseudo-op last), ``digests`` their sha256 digests (same order),
    ``metadata`` the per-digest :class:`OpMetadata`, and ``locals`` the host
    directories (``local://`` name → path) the solver must serve.
    ``head_digest`` is the digest of the op the terminal points at (the graph's
    result).  An empty Definition (from ``scratch()``) has no ops and no head.
    """

    ops: tuple[bytes, ...]
    digests: tuple[str, ...]
    metadata: Mapping[str, OpMetadata]
    locals: Mapping[str, Path]
    head_digest: str | None
    sources: Mapping[str, tuple[SourceLocation, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def to_pb(self) -> pb.Definition:
        """The ``llblib_async._pb.pb.Definition`` message: ``def_`` are exactly :attr:`ops`.

        Maps are filled in sorted key order and ``source`` gets one empty
        ``Locations`` entry per op digest, as Go's Definition carries.
        """
        if not self.ops:
            return pb.Definition()
        metadata = {
            d: pb.OpMetadata(
                ignore_cache=m.ignore_cache,
                description=dict(m.description),
                export_cache=pb.ExportCache(value=m.export_cache) if m.export_cache is not None else None,
                caps={c: True for c in sorted(m.caps)},
                progress_group=(
                    pb.ProgressGroup(
                        id=m.progress_group.id, name=m.progress_group.name, weak=m.progress_group.weak
                    )
                    if m.progress_group is not None
                    else None
                ),
            )
            for d, m in sorted(self.metadata.items())
        }
        locations = {d: pb.Locations() for d in sorted(self.digests[:-1])}
        infos: list[pb.SourceInfo] = []
        index: dict[tuple[str, bytes, str], int] = {}
        for d, places in sorted(self.sources.items()):
            for place in places:
                key = (place.filename, place.data, place.language)
                if key not in index:
                    index[key] = len(infos)
                    infos.append(
                        pb.SourceInfo(filename=place.filename, data=place.data, language=place.language)
                    )
                ranges = [
                    pb.Range(start=pb.Position(line=a, character=b), end=pb.Position(line=c, character=e))
                    for a, b, c, e in place.ranges
                ]
                locations.setdefault(d, pb.Locations()).locations.append(
                    pb.Location(source_index=index[key], ranges=ranges)
                )
        return pb.Definition(
            def_=list(self.ops), metadata=metadata, source=pb.Source(locations=locations, infos=infos)
        )

    def to_bytes(self) -> bytes:
        """The serialized ``pb.Definition`` with Go-deterministic field and map order."""
        if not self.ops:
            return b""
        return encode_definition(
            ops=self.ops,
            metadata={d: m.encode() for d, m in self.metadata.items()},
            locations=self.digests[:-1],
        )


def _context(platform: Platform | str | None) -> MarshalContext:
    if platform is None:
        plat = default_platform()
    elif isinstance(platform, str):
        plat = Platform.parse(platform)
    else:
        plat = platform
    ctx = MarshalContext.for_platform(plat)
    scope = _SCOPE.get()
    if scope:
        ctx = MarshalContext(platform=ctx.platform, key=f"{ctx.key}@{scope}")
    return ctx


def marshal(state: State, *, platform: Platform | str | None = None) -> Definition:
    """Serialize the graph behind ``state`` into a :class:`Definition`.

    ``platform`` is the default for ops that need one and did not get one (Go's
    ``Marshal(llb.Platform(p))``); it defaults to the host platform, like Go.
    Each op is encoded once and memoised per default platform, so re-marshaling
    a graph, or a bigger graph sharing parts of it, does not re-encode them.
    Raises :class:`ValueError` if two ``local://`` sources share a name but point
    at different host directories, and
    :class:`~llblib_async.llb.UnresolvedLazyStateError` if the graph has
    ``llb.lazy`` States not resolved yet for this platform (use
    :func:`~llblib_async.llb.marshal_async`).
    """
    ctx = _context(platform)
    head = None if state.output is None else follow(state.output, ctx)
    if head is None:
        return Definition(
            ops=(), digests=(), metadata=MappingProxyType({}), locals=MappingProxyType({}), head_digest=None
        )
    root = head.vertex
    ensure_marshaled(root, ctx)

    ops: list[bytes] = []
    digests: list[str] = []
    emitted: set[str] = set()
    metadata: dict[str, OpMetadata] = {}
    locals_: dict[str, Path] = {}
    sources: dict[str, tuple[SourceLocation, ...]] = {}
    key = ctx.key

    # Iterative post-order DFS (Go's recursive marshal(), without the recursion limit).
    visited: set[Vertex] = {root}
    stack: list[tuple[Vertex, int]] = [(root, 0)]
    while stack:
        vertex, next_input = stack[-1]
        inputs = vertex._inputs()
        while next_input < len(inputs):
            child = inputs[next_input].vertex
            if child._indirect:
                # An llb.lazy input: walk the op it resolved to (none if scratch; the op encodes that).
                target = follow(inputs[next_input], ctx)
                if target is None:
                    next_input += 1
                    continue
                child = target.vertex
            next_input += 1
            if child not in visited:
                visited.add(child)
                stack[-1] = (vertex, next_input)
                stack.append((child, 0))
                break
        else:
            stack.pop()
            data, dgst, meta = vertex._memo[key]
            previous = metadata.get(dgst)
            metadata[dgst] = meta if previous is None else previous.merge(meta)
            for local_name, local_dir in vertex._local_dirs():
                known = locals_.setdefault(local_name, local_dir)
                if known != local_dir:
                    raise ValueError(
                        f"two local sources are named {local_name!r} but use different directories: "
                        f"{known} and {local_dir}"
                    )
            places = tuple(vertex._source_locations())
            if places:
                sources[dgst] = tuple(dict.fromkeys(sources.get(dgst, ()) + places))
            if dgst not in emitted:
                emitted.add(dgst)
                ops.append(data)
                digests.append(dgst)

    head_digest = root._memo[key].digest
    terminal = encode_terminal(head_digest, head.index)
    terminal_digest = "sha256:" + hashlib.sha256(terminal).hexdigest()
    caps = set(_TERMINAL_CAPS)
    for meta in metadata.values():
        if meta.ignore_cache:
            caps.add("meta.ignorecache")
        if meta.description:
            caps.add("meta.description")
        if meta.export_cache is not None:
            caps.add("meta.exportcache")
    metadata[terminal_digest] = OpMetadata(caps=frozenset(caps))
    ops.append(terminal)
    digests.append(terminal_digest)
    return Definition(
        ops=tuple(ops),
        digests=tuple(digests),
        metadata=MappingProxyType(metadata),
        locals=MappingProxyType(locals_),
        head_digest=head_digest,
        sources=MappingProxyType(sources),
    )


def digest(state: State, *, platform: Platform | str | None = None) -> str:
    """The digest of the op behind ``state`` — the vertex digest BuildKit reports in progress.

    Computed with the same default ``platform`` as :func:`marshal` (host by
    default).  All outputs of one op share its digest.  Raises
    :class:`ValueError` for ``scratch()``, which has no op.
    """
    ctx = _context(platform)
    head = None if state.output is None else follow(state.output, ctx)
    if head is None:
        raise ValueError("scratch() has no op and therefore no digest")
    return ensure_marshaled(head.vertex, ctx).digest
