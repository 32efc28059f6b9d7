"""Plain-text progress, as ``buildctl --progress=plain`` prints it: :class:`PlainProgress`.

The format of Go's ``progressui`` plain mode (``#N name`` / ``#N DONE 0.1s`` /
``#N CACHED``), which CI logs and people already know.
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass, field
from typing import TextIO

from .model import LogChunk, StatusUpdate

__all__ = ["PlainProgress"]


@dataclass
class _Vertex:
    name: str
    index: int = 0  # numbered when first printed, like Go's printer
    cached: bool = False
    started: datetime.datetime | None = None
    completed: datetime.datetime | None = None
    error: str = ""
    reported_completion: datetime.datetime | None = None
    partial_line: dict[int, bool] = field(default_factory=dict)


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.2f}{unit}" if unit != "B" else f"{n}B"
        value /= 1000
    raise AssertionError("unreachable")


class PlainProgress:
    """Prints progress like ``buildctl --progress=plain``.

    Vertices are numbered in the order they first appear; with several requests
    sharing one printer, each line of a request's vertices is prefixed with its label.
    """

    def __init__(self, out: TextIO | None = None, *, show_internal: bool = True) -> None:
        self._out = out if out is not None else sys.stderr
        self._vertices: dict[tuple[str, str], _Vertex] = {}
        self._next = 0
        self._show_internal = show_internal
        self.errors: list[str] = []

    def _vertex(self, request: str, digest: str, name: str) -> _Vertex:
        key = (request, digest)
        v = self._vertices.get(key)
        if v is None:
            v = self._vertices[key] = _Vertex(name=name)
        elif name:
            v.name = name
        return v

    def _announce(self, request: str, v: _Vertex) -> None:
        if not v.index:
            self._next += 1
            v.index = self._next
            self._write(request, v, v.name)

    def _write(self, request: str, v: _Vertex, text: str) -> None:
        self._announce(request, v)
        prefix = f"[{request}] " if request else ""
        self._out.write(f"{prefix}#{v.index} {text}\n")

    def update(self, update: StatusUpdate) -> None:
        req = update.request
        for vu in update.vertices:
            v = self._vertex(req, vu.digest, vu.name)
            v.cached, v.error = vu.cached, vu.error
            v.started = vu.started or v.started
            v.completed = vu.completed
            if not self._visible(v):
                continue
            if v.started or v.cached:
                self._announce(req, v)
            if v.completed and v.completed != v.reported_completion:
                # A vertex can run more than once (local sources: resolve, then
                # transfer) and is re-sent unchanged; report each completion once.
                v.reported_completion = v.completed
                self._finish(req, v)
        for row in update.statuses:
            v = self._vertex(req, row.vertex, "")
            if not self._visible(v):
                continue
            text = row.id
            if row.total:
                text += f" {_human_bytes(row.current)} / {_human_bytes(row.total)}"
            elif row.current:
                text += f" {_human_bytes(row.current)}"
            if row.completed:
                if row.started:
                    text += f" {(row.completed - row.started).total_seconds():.1f}s"
                text += " done"
                self._write(req, v, text)
        for chunk in update.logs:
            v = self._vertex(req, chunk.vertex, "")
            self._write_log(req, v, chunk)
        for w in update.warnings:
            v = self._vertex(req, w.vertex, "")
            self._write(req, v, f"WARN: {w.short}")
        self._out.flush()

    def _visible(self, v: _Vertex) -> bool:
        return self._show_internal or not v.name.startswith("[internal]")

    def _write_log(self, request: str, v: _Vertex, chunk: LogChunk) -> None:
        self._announce(request, v)
        text = chunk.data.decode(errors="replace")
        lines = text.split("\n")
        prefix = f"[{request}] " if request else ""
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and line == "":
                v.partial_line[chunk.stream] = False
                break
            continuing = i == 0 and v.partial_line.get(chunk.stream, False)
            head = "" if continuing else f"{prefix}#{v.index} "
            self._out.write(head + line + ("" if last else "\n"))
            if last:
                v.partial_line[chunk.stream] = True

    def _finish(self, request: str, v: _Vertex) -> None:
        if any(v.partial_line.values()):
            self._out.write("\n")
            v.partial_line.clear()
        if v.error:
            if v.error.endswith("context canceled"):
                self._write(request, v, "CANCELED")
            else:
                self.errors.append(v.error)
                self._write(request, v, f"ERROR: {v.error}")
        elif v.cached:
            self._write(request, v, "CACHED")
        else:
            took = ""
            if v.started and v.completed:
                took = f" {(v.completed - v.started).total_seconds():.1f}s"
            self._write(request, v, f"DONE{took}")

    def close(self) -> None:
        self._out.flush()
