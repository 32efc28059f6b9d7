"""The LLB graph: vertices, their outputs, per-op constraints/metadata and memoised marshaling.

Every op kind (source, file, exec, merge, diff…) is a :class:`Vertex`
subclass implementing two hooks:

* ``_inputs()`` — the outputs it depends on, in the order Go's ``Vertex.Inputs()``
  returns them (this fixes the order of ops in a Definition);
* ``_encode(ctx)`` — its ``pb.Op`` bytes in Go order plus its :class:`OpMetadata`.
  It is called only after all inputs are marshaled, so it can read their digests
  with :meth:`MarshalContext.input_bytes` without recursing.  Ops keep their
  :class:`Constraints`; ``constraints.require`` goes into the op bytes
  (``_encode.encode_op(worker_filters=…)``), ``constraints.metadata(caps)`` is the
  metadata.

Lazy vertices (``llb.lazy``) are *indirect*: they stand for an output resolved
later, and every graph walk goes through :func:`follow` to reach the real op.

:func:`ensure_marshaled` walks the graph iteratively (no recursion limit at 50k
ops) and memoises each vertex's bytes, digest and metadata per marshal context,
so shared subgraphs are encoded once and later marshals of a bigger graph stop at
already-encoded vertices.

:class:`BaseState` is the part of a State the op builders read (output, working
dir, platform).  It lives here, under :mod:`.fileop` and :mod:`.exec`, so that
those modules can take States as arguments while :mod:`.state` builds on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..errors import SourceLocation
from ._encode import encode_input, encode_op_metadata
from .platform import Platform

__all__ = [
    "NO_CONSTRAINTS",
    "BaseState",
    "Constraints",
    "MarshalContext",
    "OpMetadata",
    "Output",
    "ProgressGroup",
    "Vertex",
    "follow",
    "follow_input",
    "op_constraints",
]


@dataclass(frozen=True, slots=True)
class ProgressGroup:
    """Groups ops under one heading in progress output (Go's ``llb.ProgressGroup(id, name, weak)``).

    Ops with the same ``id`` are shown as one group named ``name``; a ``weak``
    membership lets an op leave the group when it is also part of a non-weak one.
    """

    id: str
    name: str = ""
    weak: bool = False


@dataclass(frozen=True, slots=True)
class OpMetadata:
    """Per-op metadata sent next to the op bytes (not part of the digest).

    ``description`` holds free-form strings (``llb.customname`` is the display
    name); ``caps`` are the LLB capabilities the op needs — the daemon rejects the
    build if it lacks one; ``progress_group`` groups ops in progress output.
    Stored as sorted tuples/frozensets so the object is immutable and hashable.
    """

    ignore_cache: bool = False
    description: tuple[tuple[str, str], ...] = ()
    caps: frozenset[str] = frozenset()
    export_cache: bool | None = None
    progress_group: ProgressGroup | None = None

    @property
    def description_map(self) -> dict[str, str]:
        """``description`` as a dict."""
        return dict(self.description)

    def merge(self, other: OpMetadata) -> OpMetadata:
        """Go's ``mergeMetadata``: flags OR-ed, descriptions overlaid, ``other``'s fields win, caps united."""
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
            progress_group=other.progress_group if other.progress_group is not None else self.progress_group,
        )

    def encode(self) -> bytes:
        """Go-deterministic ``pb.OpMetadata`` bytes (maps sorted)."""
        pg = self.progress_group
        return encode_op_metadata(
            ignore_cache=self.ignore_cache,
            description=dict(self.description),
            export_cache=self.export_cache,
            caps=self.caps,
            progress_group=None if pg is None else (pg.id, pg.name, pg.weak),
        )


@dataclass(frozen=True, slots=True)
class Constraints:
    """Per-op options: Go's ``ConstraintsOpt`` values that do not change a State.

    * ``name`` — the progress name (``llb.customname``; Go's ``WithCustomName``);
    * ``description`` — extra free-form metadata strings (``WithDescription``);
    * ``ignore_cache`` — always re-run the op (``IgnoreCache``);
    * ``progress_group`` — a :class:`ProgressGroup` (``ProgressGroup``);
    * ``require`` — worker constraint filters: containerd filter expressions on
      the worker's labels, e.g. ``'labels."org.mobyproject.buildkit.worker.executor"==oci'``
      (``Require``; they are part of the op bytes, so they change its digest);
    * ``export_cache`` — ``True``/``False`` forces the op's result in/out of cache
      exports, ``None`` keeps the build's default (``WithExportCache``…).

    Every op builder takes ``constraints=`` (and the shorthands ``name=``,
    ``description=``, ``ignore_cache=``); :meth:`of` builds one from keyword
    arguments.  The op's platform is not a constraint here: it comes from the
    State (:meth:`State.with_platform`) or from ``platform=`` on the sources that
    have one (``image``, ``oci_layout``).
    """

    name: str | None = None
    description: tuple[tuple[str, str], ...] = ()
    ignore_cache: bool = False
    progress_group: ProgressGroup | None = None
    require: Sequence[str] = ()
    """Worker filters; any sequence is accepted and stored as a tuple."""
    export_cache: bool | None = None

    def __post_init__(self) -> None:
        # Accept the friendly input types too (a dict, a list) while keeping the value hashable.
        if not isinstance(self.description, tuple):
            object.__setattr__(self, "description", tuple(sorted(dict(self.description).items())))
        if isinstance(self.require, str):
            raise TypeError("require must be an iterable of filter strings, not a str")
        if not isinstance(self.require, tuple):
            object.__setattr__(self, "require", tuple(self.require))

    @classmethod
    def of(
        cls,
        *,
        name: str | None = None,
        description: Mapping[str, str] | None = None,
        ignore_cache: bool = False,
        progress_group: ProgressGroup | None = None,
        require: Iterable[str] = (),
        export_cache: bool | None = None,
    ) -> Constraints:
        """Build from keyword arguments (``name`` wins over ``description['llb.customname']``)."""
        if isinstance(require, str):
            raise TypeError("require must be an iterable of filter strings, not a str")
        filters = tuple(require)
        if (
            name is None
            and not description
            and not ignore_cache
            and progress_group is None
            and not filters
            and export_cache is None
        ):
            return NO_CONSTRAINTS
        desc = dict(description or {})
        if name is not None:
            desc["llb.customname"] = name
        return cls(
            name=name,
            description=tuple(sorted(desc.items())),
            ignore_cache=ignore_cache,
            progress_group=progress_group,
            require=filters,
            export_cache=export_cache,
        )

    def _description_dict(self) -> dict[str, str]:
        desc = dict(self.description)
        if self.name is not None:
            desc["llb.customname"] = self.name
        return desc

    def merge(self, other: Constraints | None) -> Constraints:
        """These constraints with ``other`` applied after them, as Go applies options in order.

        Descriptions are overlaid (``other`` wins), ``ignore_cache`` is OR-ed,
        ``other``'s progress group and export-cache setting win when set, and
        worker filters are concatenated.
        """
        if other is None or other == NO_CONSTRAINTS:
            return self
        if self == NO_CONSTRAINTS:
            return other
        desc = self._description_dict()
        desc.update(other._description_dict())
        return Constraints(
            name=None,
            description=tuple(sorted(desc.items())),
            ignore_cache=self.ignore_cache or other.ignore_cache,
            progress_group=other.progress_group if other.progress_group is not None else self.progress_group,
            require=(*self.require, *other.require),
            export_cache=other.export_cache if other.export_cache is not None else self.export_cache,
        )

    def metadata(self, caps: Iterable[str]) -> OpMetadata:
        """The op's metadata: these constraints plus ``caps``."""
        description = self.description
        if self.name is not None and dict(description).get("llb.customname") != self.name:
            description = tuple(sorted(self._description_dict().items()))
        return OpMetadata(
            ignore_cache=self.ignore_cache,
            description=description,
            caps=frozenset(caps),
            export_cache=self.export_cache,
            progress_group=self.progress_group,
        )


def op_constraints(
    constraints: Constraints | None,
    *,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
) -> Constraints:
    """What op builders store: ``constraints`` plus the ``name``/``description``/``ignore_cache`` shorthands.

    The shorthands are applied last, so they win over the same settings in ``constraints``.
    """
    shorthand = Constraints.of(name=name, description=description, ignore_cache=ignore_cache)
    if constraints is None:
        return shorthand
    return constraints.merge(shorthand)


NO_CONSTRAINTS = Constraints()
"""The constraints of an op built without any (shared, immutable)."""


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
        """The memoised result for ``vertex`` (which must already be marshaled).

        For an op input, pass ``follow_input(output, ctx).vertex`` (or use
        :meth:`input_bytes`): the output may belong to an ``llb.lazy`` State.
        """
        return vertex._memo[self.key]

    def input_bytes(self, output: Output) -> bytes:
        """The encoded ``pb.Input`` that refers to ``output`` (followed through lazy vertices)."""
        if output.vertex._indirect:
            output = follow_input(output, self)
        return encode_input(output.vertex._memo[self.key].digest, output.index)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Vertex:
    """Base class of every op in the graph; compared and hashed by identity.

    Subclasses are frozen dataclasses; the only mutable part is the private memo
    of marshaled results, which is a cache of a pure function of the vertex.
    """

    _memo: dict[str, Marshaled] = field(default_factory=dict, init=False, repr=False)

    _indirect: ClassVar[bool] = False
    """True for vertices that only stand for another output (lazy states, see :func:`follow`)."""

    def _follow(self, output: Output, ctx: MarshalContext) -> Output | None:
        """For an indirect vertex: the output ``output`` (one of ours) stands for in ``ctx``."""
        raise NotImplementedError

    def _inputs(self) -> tuple[Output, ...]:
        """The outputs this op consumes, in Go's ``Vertex.Inputs()`` order."""
        raise NotImplementedError

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        """This op's Go-order bytes and metadata; all inputs are already marshaled in ``ctx``."""
        raise NotImplementedError

    def _local_dirs(self) -> Iterable[tuple[str, Path]]:
        """Host directories (name → path) the solver must serve for this op; none by default."""
        return ()

    def _source_locations(self) -> Iterable[SourceLocation]:
        """Where this op comes from in a source file (a Dockerfile line); none by default."""
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@dataclass(frozen=True, slots=True)
class Output:
    """Output ``index`` of ``vertex`` — what a :class:`State` points at and ops consume."""

    vertex: Vertex
    index: int = 0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class BaseState:
    """The fields of a :class:`~llblib_async.llb.State` that op builders read; ``State`` is its only subclass.

    ``State`` builds on the op modules (``run``, ``file``, ``copy``…), which in
    turn take States as arguments: a copy source (:mod:`.fileop`), a mount
    source or an exec's root (:mod:`.exec`).  They check and read those through
    this base, defined below them, so the imports go one way.  Build States, not
    instances of this class.
    """

    output: Output | None = None
    working_dir: str = "/"
    platform: Platform | None = None


def follow(output: Output, ctx: MarshalContext) -> Output | None:
    """The output that really produces ``output`` in ``ctx``; ``None`` when that is scratch.

    Ordinary vertices stand for themselves.  A lazy vertex (``llb.lazy``) stands
    for the output of the State its coroutine produced; it raises if that has not
    been resolved for ``ctx`` yet.  Marshaling calls this on every edge, so ops
    built on a lazy State refer to the resolved op directly, as Go's async
    outputs do.
    """
    current: Output | None = output
    hops = 0
    while current is not None and current.vertex._indirect:
        current = current.vertex._follow(current, ctx)
        hops += 1
        if hops > _MAX_INDIRECTIONS:
            raise ValueError(f"{output.vertex!r}: lazy States that resolve to each other in a cycle")
    return current


_MAX_INDIRECTIONS = 10_000


def follow_input(output: Output, ctx: MarshalContext) -> Output:
    """:func:`follow` for an output consumed by an op, which cannot be scratch any more."""
    target = follow(output, ctx)
    if target is None:
        raise ValueError(
            f"{output.vertex!r} resolved to scratch but an op was built on it as an input; "
            "resolve it first (await llb.resolve_lazy(state)) and build on the result"
        )
    return target


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
            child = output.vertex
            if child._indirect:
                # An llb.lazy input: marshal the op it resolved to (none if scratch: the op's _encode
                # decides whether that is allowed).
                target = follow(output, ctx)
                if target is None:
                    continue
                child = target.vertex
            if key not in child._memo:
                stack.append((child, False))
    return root._memo[key]
