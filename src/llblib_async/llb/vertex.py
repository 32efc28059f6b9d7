"""The LLB graph: vertices, their outputs, per-op constraints/metadata and memoised marshaling.

Every op kind (source, file, and later exec, merge, diff…) is a :class:`Vertex`
subclass implementing two hooks:

* ``_inputs()`` — the outputs it depends on, in the order Go's ``Vertex.Inputs()``
  returns them (this fixes the order of ops in a Definition);
* ``_encode(ctx)`` — its ``pb.Op`` bytes in Go order plus its :class:`OpMetadata`.
  It is called only after all inputs are marshaled, so it can read their digests
  with :meth:`MarshalContext.input_bytes` without recursing.

:func:`ensure_marshaled` walks the graph iteratively (no recursion limit at 50k
ops) and memoises each vertex's bytes, digest and metadata per marshal context,
so shared subgraphs are encoded once and later marshals of a bigger graph stop at
already-encoded vertices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import _wire
from .platform import Platform

__all__ = ["Constraints", "MarshalContext", "OpMetadata", "Output", "Vertex"]


@dataclass(frozen=True, slots=True)
class OpMetadata:
    """Per-op metadata sent next to the op bytes (not part of the digest).

    ``description`` holds free-form strings (``llb.customname`` is the display
    name); ``caps`` are the LLB capabilities the op needs — the daemon rejects the
    build if it lacks one.  Stored as sorted tuples/frozensets so the object is
    immutable and hashable.
    """

    ignore_cache: bool = False
    description: tuple[tuple[str, str], ...] = ()
    caps: frozenset[str] = frozenset()
    export_cache: bool | None = None

    @property
    def description_map(self) -> dict[str, str]:
        """``description`` as a dict."""
        return dict(self.description)

    def merge(self, other: OpMetadata) -> OpMetadata:
        """Go's ``mergeMetadata``: flags OR-ed, descriptions overlaid (``other`` wins), caps united."""
        description = self.description
        if other.description:
            merged = dict(self.description)
            merged.update(other.description)
            description = tuple(sorted(merged.items()))
        return OpMetadata(
            ignore_cache=self.ignore_cache or other.ignore_cache,
            description=description,
            caps=self.caps | other.caps,
            export_cache=other.export_cache if other.export_cache is not None else self.export_cache,
        )

    def encode(self) -> bytes:
        """Go-deterministic ``pb.OpMetadata`` bytes (maps sorted)."""
        return _wire.encode_op_metadata(
            ignore_cache=self.ignore_cache,
            description=dict(self.description),
            export_cache=self.export_cache,
            caps=self.caps,
        )


@dataclass(frozen=True, slots=True)
class Constraints:
    """What the caller asked for one op: display ``name``, extra ``description``, ``ignore_cache``.

    Op builders take these as keyword arguments; :meth:`metadata` turns them into
    the op's :class:`OpMetadata` together with the caps the op itself requires.
    """

    name: str | None = None
    description: tuple[tuple[str, str], ...] = ()
    ignore_cache: bool = False

    @classmethod
    def of(
        cls,
        *,
        name: str | None = None,
        description: Mapping[str, str] | None = None,
        ignore_cache: bool = False,
    ) -> Constraints:
        """Build from the public keyword arguments (``name`` wins over ``description['llb.customname']``)."""
        if name is None and not description and not ignore_cache:
            return NO_CONSTRAINTS
        desc = dict(description or {})
        if name is not None:
            desc["llb.customname"] = name
        return cls(name=name, description=tuple(sorted(desc.items())), ignore_cache=ignore_cache)

    def metadata(self, caps: Iterable[str]) -> OpMetadata:
        """The op's metadata: these constraints plus ``caps``."""
        return OpMetadata(ignore_cache=self.ignore_cache, description=self.description, caps=frozenset(caps))


NO_CONSTRAINTS = Constraints()
"""The constraints of an op built without name, description or ignore_cache (shared, immutable)."""


class Marshaled(NamedTuple):
    """One vertex marshaled under one :class:`MarshalContext`."""

    data: bytes
    digest: str
    metadata: OpMetadata


@dataclass(frozen=True, slots=True)
class MarshalContext:
    """Marshal-wide settings that can change op bytes (today: the default platform).

    ``key`` identifies the context in each vertex's memo; two contexts with the
    same default platform share memoised results.
    """

    platform: Platform
    key: str

    @classmethod
    def for_platform(cls, platform: Platform) -> MarshalContext:
        """The context for a marshal whose default platform is ``platform``."""
        return cls(platform=platform, key=repr(platform))

    def marshaled(self, vertex: Vertex) -> Marshaled:
        """The memoised result for ``vertex`` (which must already be marshaled)."""
        return vertex._memo[self.key]

    def input_bytes(self, output: Output) -> bytes:
        """The encoded ``pb.Input`` that refers to ``output``."""
        return _wire.encode_input(output.vertex._memo[self.key].digest, output.index)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Vertex:
    """Base class of every op in the graph; compared and hashed by identity.

    Subclasses are frozen dataclasses; the only mutable part is the private memo
    of marshaled results, which is a cache of a pure function of the vertex.
    """

    _memo: dict[str, Marshaled] = field(default_factory=dict, init=False, repr=False)

    def _inputs(self) -> tuple[Output, ...]:
        """The outputs this op consumes, in Go's ``Vertex.Inputs()`` order."""
        raise NotImplementedError

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        """This op's Go-order bytes and metadata; all inputs are already marshaled in ``ctx``."""
        raise NotImplementedError

    def _local_dirs(self) -> Iterable[tuple[str, Path]]:
        """Host directories (name → path) the solver must serve for this op; none by default."""
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@dataclass(frozen=True, slots=True)
class Output:
    """Output ``index`` of ``vertex`` — what a :class:`State` points at and ops consume."""

    vertex: Vertex
    index: int = 0


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ensure_marshaled(root: Vertex, ctx: MarshalContext) -> Marshaled:
    """Marshal ``root`` and every not-yet-marshaled vertex below it; return ``root``'s result.

    Iterative post-order walk that stops at memoised vertices, so a vertex is
    encoded at most once per context no matter how many paths reach it.
    """
    key = ctx.key
    done = root._memo.get(key)
    if done is not None:
        return done
    stack: list[tuple[Vertex, bool]] = [(root, False)]
    while stack:
        vertex, expanded = stack.pop()
        memo = vertex._memo
        if key in memo:
            continue
        if expanded:
            data, metadata = vertex._encode(ctx)
            memo[key] = Marshaled(data, _digest(data), metadata)
            continue
        stack.append((vertex, True))
        for output in reversed(vertex._inputs()):
            if key not in output.vertex._memo:
                stack.append((output.vertex, False))
    return root._memo[key]
