"""Plain-text progress, as ``buildctl --progress=plain`` prints it: :class:`PlainProgress`.

The format of Go's ``progressui`` plain mode, which CI logs and people already know::

    #1 [internal] load local ctx
    #1 transferring ctx: 2.50MB 0.5s done
    #1 DONE 0.6s

    #2 run make
    #2 0.213 compiling
    #2 ERROR: process "make" did not complete successfully: exit code: 2

Vertex state is the :class:`~llblib_async.progress.ProgressModel`'s: a vertex that runs
more than once (a local source resolves, then transfers) or that the daemon re-sends
unchanged is reported done once per completion, as Go does (the printer this one
replaced repeated ``#N DONE``).  Go's rules are kept: a header line when the output
switches to another vertex (``#N ...`` closes the interrupted one), log lines prefixed
with seconds since the step started, transfer rows throttled to 5 % / 5 s steps, and at
the end the last lines of every failed step between ``------`` rules.

Deviations from Go: every update is printed at once (Go's printer is rate-limited to
10 Hz, which makes its output depend on timing; ours depends only on the stream), and
with several labelled requests each line starts with ``[label]`` of the request that
first reported the vertex (Go's buildctl has one request per display); so a cached step
that several requests share is printed ``CACHED`` once, not once per request.  As in Go, the
vertices of a progress group (``llb.ProgressGroup``) are printed as one entry named after
the group (:class:`~llblib_async.progress.state.ProgressGroups`).
"""

from __future__ import annotations

import collections
import datetime
import sys
from dataclasses import dataclass, field
from typing import TextIO

from .model import StatusRow, StatusUpdate
from .state import ProgressGroups, ProgressModel, VertexState

__all__ = ["PlainProgress"]

_MIN_TIME_DELTA = 5.0  # seconds; Go's minTimeDelta
_MIN_PROGRESS_DELTA = 0.05  # Go's minProgressDelta
_ERROR_LOG_LINES = 10  # Go's logsBufferSize
_MAX_DELAY = 10.0  # seconds; Go's maxDelay


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.2f}{unit}" if unit != "B" else f"{n}B"
        value /= 1000
    raise AssertionError("unreachable")


def _go_seconds(delta: datetime.timedelta) -> float:
    """``time.Duration.Seconds()`` of Go, whose rounding the log timestamps must share."""
    ns = ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    sign = -1 if ns < 0 else 1
    sec, nsec = divmod(abs(ns), 1_000_000_000)
    return sign * (float(sec) + float(nsec) / 1e9)


def _log_time(seconds: float) -> str:
    prec = 3 if seconds < 10 else 2 if seconds < 100 else 1
    return f"{seconds:.{prec}f}"


@dataclass
class _Printed:
    """What the printer has shown of one vertex (Go's per-vertex printer fields)."""

    index: int = 0
    logs: list[bytearray] = field(default_factory=list)
    logs_partial: bool = False
    logs_offset: int = 0
    error_tail: collections.deque[bytes] = field(
        default_factory=lambda: collections.deque(maxlen=_ERROR_LOG_LINES)
    )
    statuses: list[str] = field(default_factory=list)
    status_updates: set[str] = field(default_factory=set)
    rows: dict[str, StatusRow] = field(default_factory=dict)
    warning_idx: int = 0


class PlainProgress:
    """Prints progress like ``buildctl --progress=plain`` (see the module docs).

    ``show_internal=False`` hides ``[internal]`` vertices.  :attr:`errors` lists the
    errors of failed steps; :attr:`model` is the merged progress.
    """

    def __init__(self, out: TextIO | None = None, *, show_internal: bool = True) -> None:
        self._out = out if out is not None else sys.stderr
        self._show_internal = show_internal
        self.model = ProgressModel(log_lines=_ERROR_LOG_LINES)
        self._groups = ProgressGroups()
        self._printed: dict[str, _Printed] = {}
        self._current = ""
        self._last: dict[str, tuple[int, datetime.datetime | None]] = {}
        self._next_index = 0
        self._not_first = False
        self._labelled = False
        self._pending: dict[str, None] = {}
        self._count: dict[str, int] = {}
        self._block_time: dict[str, datetime.datetime | None] = {}
        self._now: datetime.datetime | None = None
        self._block_seq: dict[str, int] = {}
        self._seq = 0
        #: the request whose report of a cached vertex was printed (``CACHED`` once a session)
        self._cached_by: dict[str, str] = {}
        self.errors: list[str] = []

    def _p(self, digest: str) -> _Printed:
        p = self._printed.get(digest)
        if p is None:
            p = self._printed[digest] = _Printed()
        return p

    def _visible(self, v: VertexState) -> bool:
        return v.started is not None and (self._show_internal or not v.name.startswith("[internal]"))

    def update(self, update: StatusUpdate) -> None:
        if update.request:
            self._labelled = True
        update = self._groups.merge(update)  # a progress group is one entry, as in Go
        self.model.apply(update)
        changed = self.model.last_vertices
        stamps = [
            t
            for t in (
                *(vu.started for vu in update.vertices),
                *(vu.completed for vu in update.vertices),
                *(s.timestamp for s in update.statuses),
                *(c.timestamp for c in update.logs),
            )
            if t is not None
        ]
        if stamps:
            self._now = max(self._now or stamps[0], *stamps)
        groups_touched: set[str] = set()
        for vu in update.vertices:
            if vu.digest in changed and vu.started is not None:
                # another request of the session found the same step cached: said once
                if (
                    vu.cached
                    and self.model.vertices[vu.digest].state == "cached"
                    and self._cached_by.setdefault(vu.digest, update.request) != update.request
                ):
                    continue
                if self._groups.is_group(vu.digest):  # Go counts a group once per batch
                    if vu.digest in groups_touched:
                        continue
                    groups_touched.add(vu.digest)
                self._touch(vu.digest)  # Go counts each changed entry of the batch
        for row in update.statuses:
            p = self._p(row.vertex)
            if p.rows.get(row.id) == row:
                continue  # a shared vertex's row, re-sent by another request's stream
            if row.started is not None and row.id not in p.statuses:
                p.statuses.append(row.id)
            p.rows[row.id] = row
            if row.id in p.statuses:
                p.status_updates.add(row.id)
            self._touch(row.vertex)
        for w in update.warnings:
            self._count[w.vertex] = self._count.get(w.vertex, 0) + 1
        for chunk in self.model.last_logs:
            self._add_log(chunk.vertex, chunk.data, chunk.timestamp)
            self._touch(chunk.vertex)
        self._print()
        self._print()  # Go's display ticker refreshes between two messages
        self._out.flush()

    def _touch(self, digest: str, n: int = 1) -> None:
        """Go's ``vertex.update``: count the event and remember the vertex needs printing."""
        if not self._count.get(digest):
            self._block_time[digest] = self._now
            self._seq += 1
            self._block_seq[digest] = self._seq
        self._count[digest] = self._count.get(digest, 0) + n
        self._pending[digest] = None

    def _add_log(self, digest: str, data: bytes, timestamp: datetime.datetime | None) -> None:
        p = self._p(digest)
        v = self.model.vertices[digest]
        pieces = data.split(b"\n")
        complete = data.endswith(b"\n")
        if complete:
            pieces.pop()
        for i, piece in enumerate(pieces):
            if p.logs_partial and p.logs and i == 0:
                p.logs[-1] += piece
            else:
                merged = v.merged_intervals
                ts = 0.0
                if merged and timestamp is not None:
                    ts = _go_seconds(timestamp - merged[-1][0])
                p.logs.append(bytearray(f"{_log_time(ts)} ".encode()) + piece)
        p.logs_partial = not complete

    def _prefix(self, v: VertexState) -> str:
        if not self._labelled or not v.requests or not v.requests[0]:
            return ""
        return f"[{v.requests[0]}] "

    def _print(self) -> None:
        """Go's ``textMux.print``, with the daemon's timestamps for Go's wall clock."""
        completed: list[VertexState] = []
        rest: list[str] = []
        for digest in list(self._pending):
            v = self.model.vertices.get(digest)
            if v is None or not self._visible(v):
                self._pending.pop(digest, None)
                continue
            if v.completed is not None:
                completed.append(v)
            else:
                rest.append(digest)
        current = self._current
        if any(v.digest == current for v in completed):
            self._print_vertex(current)
        for v in sorted(completed, key=lambda v: v.merged_intervals[-1][1] or datetime.datetime.min):
            if v.digest != current:
                self._print_vertex(v.digest)
        if not rest:
            if current and current in self.model.vertices:
                cv = self.model.vertices[current]
                if cv.started is not None and cv.completed is None:
                    return
            for v in self.model.ordered():  # make an open vertex active
                if v.started is not None and v.completed is None and self._visible(v):
                    self._print_vertex(v.digest)
                    return
            return
        if current in rest:
            self._print_vertex(current)
        if self._current == "":
            # the busiest waiting vertex (Go: most events per second since it began waiting,
            # so on a tie the one that began waiting last)
            best = max(rest, key=lambda d: (self._count.get(d, 0), self._block_seq.get(d, 0)))
            self._print_vertex(best)
            return
        for digest in rest:  # Go's maxDelay: a vertex waiting 10 s is shown
            since = self._block_time.get(digest)
            waited = (self._now - since).total_seconds() if since and self._now else 0.0
            if digest != self._current and waited > _MAX_DELAY:
                self._print_vertex(digest)
                return

    def _write(self, text: str) -> None:
        self._out.write(text)

    def _print_vertex(self, digest: str) -> None:
        v = self.model.vertices[digest]
        p = self._p(digest)
        if p.index == 0:
            self._next_index += 1
            p.index = self._next_index
        pre = self._prefix(v)
        if digest != self._current:
            if self._current:
                old_v = self.model.vertices[self._current]
                old = self._p(self._current)
                if old.logs_partial:
                    self._write("\n")
                old.logs_offset = 0
                self._count[self._current] = 0
                self._write(f"{self._prefix(old_v)}#{old.index} ...\n")
            if self._not_first:
                self._write("\n")
            self._not_first = True
            self._write(f"{pre}#{p.index} {v.name}\n")
        open_status = False
        for sid in p.statuses:
            if sid not in p.status_updates:
                continue
            s = p.rows[sid]
            last = self._last.get(sid)
            if last is not None and s.completed is None:
                progress = (s.current - last[0]) / s.total if s.total > 0 else 0.0
                elapsed = (
                    (s.timestamp - last[1]).total_seconds()
                    if s.timestamp is not None and last[1] is not None
                    else 0.0
                )
                if progress < _MIN_PROGRESS_DELTA and elapsed < _MIN_TIME_DELTA:
                    continue
            self._last[sid] = (s.current, s.timestamp)
            size = ""
            if s.total:
                size = f" {_human_bytes(s.current)} / {_human_bytes(s.total)}"
            elif s.current:
                size = f" {_human_bytes(s.current)}"
            tm = ""
            end = s.completed or s.timestamp
            if s.started is not None and end is not None:
                diff = (end - s.started).total_seconds()
                if diff > 0.01:
                    tm = f" {diff:.1f}s"
            if s.completed is not None:
                tm += " done"
            else:
                open_status = True
            self._write(f"{pre}#{p.index} {s.id}{size}{tm}\n")
        p.status_updates.clear()
        for w in v.warnings[p.warning_idx :]:
            where = f" ({w.location})" if w.location else ""
            self._write(f"{pre}#{p.index} WARN: {w.short}{where}\n")
            p.warning_idx += 1
        for i, line in enumerate(p.logs):
            if i == 0 and p.logs_offset:
                self._write(line[p.logs_offset :].decode(errors="replace"))
            else:
                self._write(f"{pre}#{p.index} " + line.decode(errors="replace"))
            if i != len(p.logs) - 1 or not p.logs_partial:
                self._write("\n")
                p.error_tail.append(bytes(line))
        if p.logs:
            if p.logs_partial:
                p.logs = p.logs[-1:]
                p.logs_offset = len(p.logs[0])
            else:
                p.logs = []
                p.logs_offset = 0
        self._current = digest
        self._pending.pop(digest, None)
        if v.completed is not None and not open_status:
            self._current = ""
            self._count[digest] = 0
            if p.logs_partial:
                self._write("\n")
                p.error_tail.append(bytes(p.logs[-1]) if p.logs else b"")
                p.logs, p.logs_partial, p.logs_offset = [], False, 0
            state = v.state
            if state == "canceled":
                self._write(f"{pre}#{p.index} CANCELED\n")
            elif state == "error":
                if v.error not in self.errors:
                    self.errors.append(v.error)
                self._write(f"{pre}#{p.index} ERROR: {v.error}\n")
            elif state == "cached":
                self._write(f"{pre}#{p.index} CACHED\n")
            else:
                self._write(f"{pre}#{p.index} DONE {v.duration():.1f}s\n")

    def close(self) -> None:
        """Print the last lines of each failed step (Go's ``printErrorLogs``) and flush."""
        for v in self.model.ordered():
            if v.state != "error":
                continue
            tail = self._printed[v.digest].error_tail if v.digest in self._printed else ()
            self._write("------\n")
            self._write(f" > {v.name}:\n")
            for line in tail:
                self._write(line.decode(errors="replace") + "\n")
            self._write("------\n")
        self._out.flush()
