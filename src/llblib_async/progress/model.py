"""A sans-IO model of BuildKit's Status stream: plain, immutable values.

The daemon sends deltas (vertices re-sent whenever they change, log chunks, status
rows, warnings) for one build ref; :meth:`StatusUpdate.from_pb` turns one batch into
these values, labelled with the request it belongs to, so any number of requests can
feed one display.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .._pb.moby.buildkit import v1 as control

__all__ = ["BuildWarning", "LogChunk", "SourceRange", "StatusRow", "StatusUpdate", "VertexUpdate"]


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


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Raw output of a vertex: bytes, not line-aligned (1 = stdout, 2 = stderr)."""

    vertex: str
    stream: int
    data: bytes
    timestamp: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class SourceRange:
    """Lines (and characters) of a source file, 1-based as BuildKit sends them."""

    start_line: int
    start_character: int = 0
    end_line: int = 0
    end_character: int = 0


@dataclass(frozen=True, slots=True)
class BuildWarning:
    """A warning of a vertex (e.g. a Dockerfile lint rule), with where in the source it is.

    ``filename``/``language``/``source`` come from the warning's ``SourceInfo`` (``source``
    is the file's text when the frontend sends it) and ``ranges`` from its ``Range`` list.
    """

    vertex: str
    level: int
    short: str
    detail: tuple[str, ...] = ()
    url: str = ""
    filename: str = ""
    language: str = ""
    source: bytes = b""
    ranges: tuple[SourceRange, ...] = ()

    @property
    def location(self) -> str:
        """``file:line`` (or ``file:line-line``) when the warning has a source location."""
        if not self.filename:
            return ""
        if not self.ranges:
            return self.filename
        r = self.ranges[0]
        end = f"-{r.end_line}" if r.end_line and r.end_line != r.start_line else ""
        return f"{self.filename}:{r.start_line}{end}"


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
                    filename=w.info.filename if w.info is not None else "",
                    language=w.info.language if w.info is not None else "",
                    source=w.info.data if w.info is not None else b"",
                    ranges=tuple(
                        SourceRange(
                            start_line=r.start.line if r.start else 0,
                            start_character=r.start.character if r.start else 0,
                            end_line=r.end.line if r.end else 0,
                            end_character=r.end.character if r.end else 0,
                        )
                        for r in w.ranges
                    ),
                )
                for w in msg.warnings
            ),
        )
