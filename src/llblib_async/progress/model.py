"""A sans-IO model of BuildKit's Status stream: plain, immutable values.

The daemon sends deltas (vertices re-sent whenever they change, log chunks, status
rows, warnings) for one build ref; :meth:`StatusUpdate.from_pb` turns one batch into
these values, labelled with the request it belongs to, so any number of requests can
feed one display.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import TypeVar

from .._pb.moby.buildkit import v1 as control
from ..errors import SourceLocation

__all__ = ["BuildWarning", "LogChunk", "StatusRow", "StatusUpdate", "VertexUpdate"]

_T = TypeVar("_T")


def _quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that fills its slots directly.

    The generated one calls ``object.__setattr__`` per field (what ``frozen`` costs): a
    busy session builds a few of these values for each of hundreds of thousands of
    Status messages, and this ``__init__`` takes about half the time.  Same signature,
    same values; the class stays frozen (its ``__setattr__`` still refuses).
    """
    params, body = [], []
    namespace: dict[str, object] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's descriptor
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body)
    exec(source, namespace)  # generated from the field names, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__annotations__ = cls.__init__.__annotations__  # help() shows the types
    setattr(cls, "__init__", init)  # noqa: B010 - a class's method, replaced
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class VertexUpdate:
    """The current state of one LLB vertex (merged by ``digest``; later values win)."""

    digest: str
    name: str
    inputs: tuple[str, ...] = ()
    cached: bool = False
    started: datetime.datetime | None = None
    completed: datetime.datetime | None = None
    error: str = ""
    #: ``(id, name, weak)`` of the vertex's ``llb.ProgressGroup``, if any.
    progress_group: tuple[str, str, bool] | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class StatusRow:
    """A sub-task of a vertex, e.g. ``transferring ctx: 12kB`` or a layer download."""

    id: str
    vertex: str
    name: str = ""
    current: int = 0
    total: int = 0
    timestamp: datetime.datetime | None = None
    started: datetime.datetime | None = None
    completed: datetime.datetime | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class LogChunk:
    """Raw output of a vertex: bytes, not line-aligned (1 = stdout, 2 = stderr)."""

    vertex: str
    stream: int
    data: bytes
    timestamp: datetime.datetime | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class BuildWarning:
    """A warning of the build (a frontend's lint rule, a deprecated option...).

    ``sources`` say where it points in the source (a Dockerfile's lines), when the
    frontend said so.
    """

    vertex: str
    level: int
    short: str
    detail: tuple[str, ...] = ()
    url: str = ""
    sources: tuple[SourceLocation, ...] = ()

    @property
    def location(self) -> str:
        """``file:line`` (or ``file:line-line``) of the first source location, or ``""``."""
        if not self.sources:
            return ""
        src = self.sources[0]
        if not src.ranges:
            return src.filename
        start, _, end, _ = src.ranges[0]
        return f"{src.filename}:{start}" + (f"-{end}" if end and end != start else "")


def _warning_sources(w: control.VertexWarning) -> tuple[SourceLocation, ...]:
    if w.info is None:
        return ()
    return (SourceLocation.from_pb(w.info, w.ranges),)


@_quick_init
@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One batch of progress for one build request (``request`` labels it)."""

    request: str = ""
    vertices: tuple[VertexUpdate, ...] = ()
    statuses: tuple[StatusRow, ...] = ()
    logs: tuple[LogChunk, ...] = ()
    warnings: tuple[BuildWarning, ...] = ()

    @classmethod
    def from_pb(cls, msg: control.StatusResponse, *, request: str = "") -> StatusUpdate:
        return cls(
            request=request,
            vertices=tuple(
                VertexUpdate(
                    digest=v.digest,
                    name=v.name,
                    inputs=tuple(v.inputs),
                    cached=v.cached,
                    started=v.started,
                    completed=v.completed,
                    error=v.error,
                    progress_group=(
                        None
                        if v.progress_group is None
                        else (v.progress_group.id, v.progress_group.name, v.progress_group.weak)
                    ),
                )
                for v in msg.vertexes
            ),
            statuses=tuple(
                StatusRow(
                    id=s.id,
                    vertex=s.vertex,
                    name=s.name,
                    current=s.current,
                    total=s.total,
                    timestamp=s.timestamp,
                    started=s.started,
                    completed=s.completed,
                )
                for s in msg.statuses
            ),
            logs=tuple(
                LogChunk(vertex=lg.vertex, stream=lg.stream, data=lg.msg, timestamp=lg.timestamp)
                for lg in msg.logs
            ),
            warnings=tuple(
                BuildWarning(
                    vertex=w.vertex,
                    level=w.level,
                    short=w.short.decode(errors="replace"),
                    detail=tuple(d.decode(errors="replace") for d in w.detail),
                    url=w.url,
                    sources=_warning_sources(w),
                )
                for w in msg.warnings
            ),
        )
