"""The merged progress of a session: :class:`ProgressModel` (sans-IO).

Every request of a session sends its own Status stream; a display wants one picture.
:class:`ProgressModel` folds :class:`~llblib_async.progress.StatusUpdate` batches of any
number of requests into

* one :class:`VertexState` per vertex digest -- a vertex two requests share (the same
  base image, the same step) is kept once and lists both request labels;
* one :class:`RequestState` per request label, with its vertices in the order they
  started;
* per vertex: the run intervals (BuildKit runs some vertices more than once, e.g. a local
  source resolves, then transfers; durations merge overlapping intervals as Go's
  ``progressui`` does), ``cached``/``error``, the sub-progress rows (bytes transferred,
  layers pulled or pushed) and their rates, warnings with source locations, and the log
  in a bounded :class:`LogBuffer`.

Memory is bounded whatever the build prints: a log keeps its last ``log_lines`` lines,
each cut at ``line_bytes``, and counts what it dropped, so a 1 GiB log costs kilobytes;
BuildKit's own clipping (``[output clipped, log limit … reached]``) is recognised and
shown as :attr:`LogBuffer.clipped`.

Updates are coalesced: :meth:`ProgressModel.apply` only records what changed, and a
display asks :meth:`ProgressModel.take_changes` when it repaints (at its own frame rate),
never once per message.  Nothing here does I/O or reads the clock; times come from the
daemon's timestamps (``now`` is a parameter where it matters).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import overload

from .model import BuildWarning, LogChunk, StatusRow, StatusUpdate, VertexUpdate

__all__ = [
    "LOG_CLIPPED_MARKER",
    "Changes",
    "LogBuffer",
    "LogLine",
    "ProgressGroups",
    "ProgressModel",
    "RequestState",
    "SubProgress",
    "VertexState",
    "merge_intervals",
]

#: What BuildKit writes into a log when it stops forwarding a step's output.
LOG_CLIPPED_MARKER = b"[output clipped, log limit"

_SEEN_LOGS = 256  # log chunks remembered per shared vertex
_NONE: frozenset[str] = frozenset()
_UNFINISHED = ("waiting", "running")

Interval = tuple[datetime.datetime, datetime.datetime | None]


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Overlapping ``(start, stop)`` intervals merged (an open one swallows the later ones),
    as Go's ``progressui.mergeIntervals``."""
    merged: list[Interval] = []
    for start, stop in sorted(intervals, key=lambda iv: iv[0]):
        if not merged:
            merged.append((start, stop))
            continue
        cur_start, cur_stop = merged[-1]
        if cur_stop is None:
            break
        if cur_stop < start:
            merged.append((start, stop))
        elif stop is None:
            merged[-1] = (cur_start, None)
            break
        elif stop > cur_stop:
            merged[-1] = (cur_start, stop)
    return merged


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a vertex's output (``stream`` 1 = stdout, 2 = stderr), without its newline.

    ``timestamp`` is when the daemon saw the line's first bytes; ``cut`` says the line was
    longer than the buffer's ``line_bytes`` and only its start is kept.
    """

    stream: int
    text: str
    timestamp: datetime.datetime | None = None
    cut: bool = False


#: a kept line: its bytes as the daemon sent them (a one-line chunk is kept whole, newline
#: and all), decoded only when asked for
_Line = tuple[int, bytes, "datetime.datetime | None", bool]


def _log_line(line: _Line) -> LogLine:
    stream, raw, timestamp, cut = line
    text = raw.decode("utf-8", "replace")
    return LogLine(stream, text[:-1] if text.endswith("\n") else text, timestamp, cut)


class LogLines(Sequence[LogLine]):
    """:attr:`LogBuffer.lines`: the kept lines as :class:`LogLine` values, made on access.

    The buffer keeps plain tuples of the bytes it was sent: no copy and no decoding per
    line (a busy session sends hundreds of thousands), and the garbage collector stops
    tracking the tuples, so its full collections do not walk every kept line.
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: collections.deque[_Line]) -> None:
        self._lines = lines

    @property
    def maxlen(self) -> int | None:
        return self._lines.maxlen

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> LogLine: ...
    @overload
    def __getitem__(self, index: slice) -> list[LogLine]: ...
    def __getitem__(self, index: int | slice) -> LogLine | list[LogLine]:
        if isinstance(index, slice):
            return [_log_line(line) for line in list(self._lines)[index]]
        return _log_line(self._lines[index])

    def __iter__(self) -> Iterator[LogLine]:
        for line in self._lines:
            yield _log_line(line)

    def __repr__(self) -> str:
        return f"LogLines({list(self)!r})"


class LogBuffer:
    """The last ``max_lines`` lines of a vertex's output, each at most ``line_bytes`` bytes.

    Counts everything it saw (:attr:`total_bytes`, :attr:`total_lines`) and what it let go
    (:attr:`dropped_lines`), and whether BuildKit clipped the log (:attr:`clipped`).
    """

    __slots__ = (
        "_lines",
        "_partial",
        "_partial_cut",
        "_partial_ts",
        "clipped",
        "line_bytes",
        "total_bytes",
        "total_lines",
    )

    def __init__(self, *, max_lines: int = 1000, line_bytes: int = 4096) -> None:
        self.line_bytes = line_bytes
        self._lines: collections.deque[_Line] = collections.deque(maxlen=max_lines)
        self._partial: dict[int, bytearray] = {}
        self._partial_cut: dict[int, bool] = {}
        self._partial_ts: dict[int, datetime.datetime | None] = {}
        self.total_bytes = 0
        self.total_lines = 0
        self.clipped = False

    @property
    def dropped_lines(self) -> int:
        """Finished lines let go to keep the last ``max_lines``."""
        return self.total_lines - len(self._lines)

    def feed(self, stream: int, data: bytes, timestamp: datetime.datetime | None = None) -> None:
        size = len(data)
        self.total_bytes += size
        # A busy build's every message: one whole line, nothing pending on its stream.  What
        # it costs here is most of what a message costs a display, so each test is the
        # cheapest one.  BuildKit's clipping marker is never such a line: it writes it
        # between two newlines ("\n[output clipped, log limit 2MiB reached]\n").
        if (
            data.find(b"\n") == size - 1
            and size
            and size <= self.line_bytes
            and not (self._partial and stream in self._partial)
        ):
            self._lines.append((stream, data, timestamp, False))
            self.total_lines += 1
            return
        if LOG_CLIPPED_MARKER in data:
            self.clipped = True
        if data.endswith(b"\n") and size <= self.line_bytes and stream not in self._partial:
            # whole lines, none too long
            pieces = data[:-1].split(b"\n")
            self._lines.extend([(stream, piece, timestamp, False) for piece in pieces])
            self.total_lines += len(pieces)
            return
        start = 0
        while True:
            nl = data.find(b"\n", start)
            piece = data[start:] if nl < 0 else data[start:nl]
            if piece or nl >= 0:
                buf = self._partial.get(stream)
                if buf is None:
                    buf = self._partial[stream] = bytearray()
                    self._partial_ts[stream] = timestamp
                room = self.line_bytes - len(buf)
                if len(piece) > room:
                    buf += piece[: max(room, 0)]
                    self._partial_cut[stream] = True
                else:
                    buf += piece
            if nl < 0:
                break
            self._finish_line(stream)
            start = nl + 1

    @property
    def lines(self) -> LogLines:
        """The kept lines (the last ``max_lines``), oldest first."""
        return LogLines(self._lines)

    def _finish_line(self, stream: int) -> None:
        buf = self._partial.pop(stream, bytearray())
        self._lines.append(
            (
                stream,
                bytes(buf),
                self._partial_ts.pop(stream, None),
                self._partial_cut.pop(stream, False),
            )
        )
        self.total_lines += 1

    @property
    def partial(self) -> Iterator[LogLine]:
        """Lines still being written (no newline yet), one per stream."""
        for stream, buf in self._partial.items():
            yield LogLine(stream, buf.decode(errors="replace"), self._partial_ts.get(stream))

    def tail(self, n: int) -> list[LogLine]:
        """The last ``n`` lines, including an unfinished last line."""
        if not n:
            return []
        done = self._lines  # the last n of a deque, not a copy of all of it (a display asks each frame)
        lines = [_log_line(done[-i]) for i in range(min(n, len(done)), 0, -1)]
        lines.extend(self.partial)
        return lines[-n:]


@dataclass(slots=True)
class SubProgress:
    """A sub-task of a vertex (a transfer, a layer pull or push), with its transfer rate."""

    id: str
    name: str = ""
    current: int = 0
    total: int = 0
    started: datetime.datetime | None = None
    completed: datetime.datetime | None = None
    timestamp: datetime.datetime | None = None
    #: bytes per second over the row's last two updates (0 before the second one)
    rate: float = 0.0

    def apply(self, row: StatusRow) -> None:
        if row.timestamp is not None and self.timestamp is not None and row.current >= self.current:
            dt = (row.timestamp - self.timestamp).total_seconds()
            if dt > 0:
                self.rate = (row.current - self.current) / dt
        self.name = row.name or self.name
        self.current, self.total = row.current, row.total
        self.started = row.started or self.started
        self.completed = row.completed
        self.timestamp = row.timestamp or self.timestamp

    @property
    def done(self) -> bool:
        return self.completed is not None

    def duration(self) -> float:
        end = self.completed or self.timestamp
        if self.started is None or end is None:
            return 0.0
        return max((end - self.started).total_seconds(), 0.0)


@dataclass(slots=True)
class VertexState:
    """Everything known of one vertex, merged over every request that shares it."""

    digest: str
    name: str = ""
    inputs: tuple[str, ...] = ()
    #: the labels of the requests that reported the vertex, the first one first (a tuple, as
    #: is ``warnings``: the garbage collector stops tracking those, and a busy session has
    #: tens of thousands of vertices)
    requests: tuple[str, ...] = ()
    cached: bool = False
    error: str = ""
    progress_group: tuple[str, str, bool] | None = None
    intervals: dict[datetime.datetime, datetime.datetime | None] = field(default_factory=dict)
    subprogress: dict[str, SubProgress] = field(default_factory=dict)
    warnings: tuple[BuildWarning, ...] = ()
    logs: LogBuffer = field(default_factory=LogBuffer)
    #: order of first start over the whole model (0 = not started yet)
    order: int = 0
    #: recent log chunks (at least the last 256), to drop the copy a second request's
    #: stream sends of a shared vertex
    seen_logs: dict[int, None] = field(default_factory=dict)
    _state: str = "waiting"

    @property
    def merged_intervals(self) -> list[Interval]:
        return merge_intervals(self.intervals.items())

    @property
    def started(self) -> datetime.datetime | None:
        return min(self.intervals) if self.intervals else None

    @property
    def completed(self) -> datetime.datetime | None:
        """The end of the last run when every run ended, else ``None`` (running or waiting)."""
        merged = self.merged_intervals
        return merged[-1][1] if merged else None

    @property
    def state(self) -> str:
        """``waiting``, ``running``, ``done``, ``cached``, ``error`` or ``canceled``."""
        return self._state

    def _compute_state(self) -> str:
        if not self.intervals:
            return "cached" if self.cached else "waiting"
        if self.completed is None:
            return "running"
        if self.error:
            return "canceled" if self.error.endswith("context canceled") else "error"
        return "cached" if self.cached else "done"

    def duration(self, now: datetime.datetime | None = None) -> float:
        """Seconds spent running (overlapping runs counted once); an open run ends at ``now``."""
        total = 0.0
        for start, stop in self.merged_intervals:
            end = stop or now
            if end is not None:
                total += max((end - start).total_seconds(), 0.0)
        return total


@dataclass(slots=True)
class RequestState:
    """One request (by label) and the vertices it reported, in the order they appeared."""

    label: str
    vertices: list[str] = field(default_factory=list)
    warnings: list[BuildWarning] = field(default_factory=list)
    first_seen: datetime.datetime | None = None

    #: vertices of this request that are running now / that ended with an error
    running: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    finished: int = 0

    def counts(self, model: ProgressModel | None = None) -> tuple[int, int]:
        """``(finished, total)`` vertices of this request (kept up to date by ``apply``)."""
        return self.finished, len(self.vertices)


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the previous :meth:`ProgressModel.take_changes`."""

    vertices: frozenset[str] = frozenset()
    requests: frozenset[str] = frozenset()
    messages: int = 0

    def __bool__(self) -> bool:
        return bool(self.vertices or self.requests)


class ProgressGroups:
    """Rewrites updates so each progress group is one vertex, as Go's ``progressui`` shows it.

    The vertices of an ``llb.ProgressGroup`` (``VertexUpdate.progress_group``) become one
    vertex whose digest is the group id and whose name is the group's name (Go's
    ``vertexGroup``): its runs are its members' runs (so it starts with the first member and
    is complete when every started member is), it is cached when every member is, its error
    is the first member error, and the members' rows, logs and warnings are its own.  Like
    Go, a group is not shown until a non-weak member starts (or a member fails).
    """

    def __init__(self) -> None:
        self._members: dict[str, dict[str, VertexUpdate]] = {}
        self._group_of: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._revealed: set[str] = set()

    def is_group(self, digest: str) -> bool:
        return digest in self._members

    def merge(self, update: StatusUpdate) -> StatusUpdate:
        touched: dict[str, None] = {}
        vertices: list[VertexUpdate] = []
        for vu in update.vertices:
            pg = vu.progress_group
            if pg is None:
                vertices.append(vu)
                continue
            gid, gname, _weak = pg
            self._members.setdefault(gid, {})[vu.digest] = vu
            self._group_of[vu.digest] = gid
            if gname or gid not in self._names:
                self._names[gid] = gname
            touched[gid] = None
        group_of = self._group_of
        if not touched and not group_of:
            return update
        for gid in touched:  # after the batch's other vertices, as Go refreshes groups
            subs = list(self._members[gid].values())
            cached = all(s.cached for s in subs)
            error = next((s.error for s in subs if s.error), "")
            if gid not in self._revealed:
                if not error and not any(
                    s.started is not None and not (s.progress_group and s.progress_group[2]) for s in subs
                ):
                    continue
                self._revealed.add(gid)
            name = self._names[gid]
            runs = {s.started: s.completed for s in subs if s.started is not None}
            if not runs:
                vertices.append(VertexUpdate(digest=gid, name=name, cached=cached, error=error))
            for started in sorted(runs):
                vertices.append(
                    VertexUpdate(
                        digest=gid,
                        name=name,
                        cached=cached,
                        started=started,
                        completed=runs[started],
                        error=error,
                    )
                )
        if not group_of:
            return dataclasses.replace(update, vertices=tuple(vertices))
        return dataclasses.replace(
            update,
            vertices=tuple(vertices),
            statuses=tuple(
                dataclasses.replace(r, vertex=group_of[r.vertex]) if r.vertex in group_of else r
                for r in update.statuses
            ),
            logs=tuple(
                dataclasses.replace(c, vertex=group_of[c.vertex]) if c.vertex in group_of else c
                for c in update.logs
            ),
            warnings=tuple(
                dataclasses.replace(w, vertex=group_of[w.vertex]) if w.vertex in group_of else w
                for w in update.warnings
            ),
        )


class ProgressModel:
    """The merged state of every request of a session (see the module docs).

    ``merge_groups=True`` shows each progress group as one vertex (:class:`ProgressGroups`),
    as Go's ``progressui`` does; :attr:`groups` is then the rewriter.
    """

    def __init__(self, *, log_lines: int = 1000, line_bytes: int = 4096, merge_groups: bool = False) -> None:
        self.groups = ProgressGroups() if merge_groups else None
        self.vertices: dict[str, VertexState] = {}
        self.requests: dict[str, RequestState] = {}
        self.warnings: list[BuildWarning] = []
        self.messages = 0
        self.log_lines = log_lines
        self.line_bytes = line_bytes
        self._started = 0
        self._dirty_vertices: set[str] = set()
        #: digests of the vertices running now
        self.running: set[str] = set()
        self._failed: set[str] = set()
        self._finished = 0
        self._start_time: datetime.datetime | None = None
        self._dirty_requests: set[str] = set()
        self._messages_taken = 0  # self.messages at the last take_changes
        #: the log chunks of the last :meth:`apply` that were new (not a shared vertex's copy)
        self.last_logs: Sequence[LogChunk] = ()
        #: the vertices whose own state (not rows, logs or warnings) the last :meth:`apply` changed
        self.last_vertices: AbstractSet[str] = _NONE

    def _vertex(self, digest: str, request: RequestState) -> VertexState:
        v = self.vertices.get(digest)
        if v is None:
            v = self.vertices[digest] = VertexState(
                digest=digest, logs=LogBuffer(max_lines=self.log_lines, line_bytes=self.line_bytes)
            )
        if request.label not in v.requests:
            v.requests += (request.label,)
            request.vertices.append(digest)
            self._dirty_requests.add(request.label)
            self._count(request, v.digest, "waiting", v.state)
        return v

    def _count(self, req: RequestState, digest: str, old: str, new: str) -> None:
        if old == new:
            return
        req.finished += (new not in _UNFINISHED) - (old not in _UNFINISHED)
        if new == "running":
            req.running.add(digest)
        else:
            req.running.discard(digest)
        if new == "error":
            req.failed.add(digest)
        else:
            req.failed.discard(digest)

    def _transition(self, v: VertexState) -> None:
        old, new = v._state, v._compute_state()
        if old == new:
            return
        v._state = new
        self._finished += (new not in _UNFINISHED) - (old not in _UNFINISHED)
        if new == "running":
            self.running.add(v.digest)
        else:
            self.running.discard(v.digest)
        if new == "error":
            self._failed.add(v.digest)
        else:
            self._failed.discard(v.digest)
        for label in v.requests:
            self._count(self.requests[label], v.digest, old, new)

    def request(self, label: str) -> RequestState:
        r = self.requests.get(label)
        if r is None:
            r = self.requests[label] = RequestState(label)
            self._dirty_requests.add(label)
        return r

    def apply(self, update: StatusUpdate) -> set[str]:
        """Fold one batch in; returns the digests whose vertex state changed in it."""
        logs = update.logs
        if len(logs) == 1 and not update.vertices and not update.statuses and not update.warnings:
            # The message of a busy build (9 in 10): one chunk of output of a vertex its
            # request already reported.  What it costs here is most of what a message
            # costs a display: this is _keep_chunk's work without the request lookup, the
            # group rewriter and the loops of the general path below.
            chunk = logs[0]
            digest = chunk.vertex
            v = self.vertices.get(digest)
            groups = self.groups
            if (
                v is not None
                and update.request in v.requests
                and (groups is None or digest not in groups._group_of)
            ):
                self.messages += 1
                self.last_vertices = _NONE
                if not self._seen(v, chunk):
                    self.last_logs = ()
                    return set()
                self.last_logs = logs
                v.logs.feed(chunk.stream, chunk.data, chunk.timestamp)
                self._dirty_vertices.add(digest)
                return {digest}
        groups = self.groups
        if groups is not None:
            update = groups.merge(update)
        self.messages += 1
        req = self.request(update.request)
        changed: set[str] = set()
        for vu in update.vertices:
            v = self._vertex(vu.digest, req)
            started = vu.started
            # a vertex is re-sent whenever anything of it changes: most fields are as before
            changed_fields = (
                bool(vu.name and vu.name != v.name) or vu.cached != v.cached or vu.error != v.error
            )
            v.name = vu.name or v.name
            v.inputs = vu.inputs or v.inputs
            v.cached, v.error = vu.cached, vu.error
            v.progress_group = vu.progress_group
            if started is not None:
                if self._start_time is None or started < self._start_time:
                    self._start_time = started
                if not v.intervals:
                    self._started += 1
                    v.order = self._started
                    if req.first_seen is None:
                        req.first_seen = started
                if started not in v.intervals:
                    v.intervals[started] = vu.completed
                    changed_fields = True
                elif vu.completed is not None and v.intervals[started] != vu.completed:
                    # a stream that lags (another request's, for a shared vertex) never
                    # reopens a run that already ended
                    v.intervals[started] = vu.completed
                    changed_fields = True
            if changed_fields:
                changed.add(vu.digest)
                self._transition(v)
        self.last_vertices = set(changed) if changed else set()
        for row in update.statuses:
            v = self._vertex(row.vertex, req)
            sub = v.subprogress.get(row.id)
            if sub is None:
                sub = v.subprogress[row.id] = SubProgress(row.id)
            sub.apply(row)
            changed.add(row.vertex)
        self.last_logs = last_logs = []
        vertices = self.vertices
        for chunk in update.logs:
            if self._keep_chunk(chunk, vertices, req):
                last_logs.append(chunk)
                changed.add(chunk.vertex)
        for w in update.warnings:
            v = self._vertex(w.vertex, req)
            v.warnings += (w,)
            req.warnings.append(w)
            self.warnings.append(w)
            changed.add(w.vertex)
            self._dirty_requests.add(req.label)
        self._dirty_vertices |= changed
        return changed

    def _keep_chunk(self, chunk: LogChunk, vertices: dict[str, VertexState], req: RequestState) -> bool:
        """Feed ``chunk`` to its vertex's log unless another request's stream already did
        (every request's stream reports a shared vertex's output: one copy is kept)."""
        found = vertices.get(chunk.vertex)  # _vertex's work only for a vertex new to the request
        v = found if found is not None and req.label in found.requests else self._vertex(chunk.vertex, req)
        if not self._seen(v, chunk):
            return False
        v.logs.feed(chunk.stream, chunk.data, chunk.timestamp)
        return True

    @staticmethod
    def _seen(v: VertexState, chunk: LogChunk) -> bool:
        """Remember ``chunk`` of ``v``; ``False`` if it was seen already (a shared vertex's copy).

        A chunk is known by the hash of its stream, timestamp and bytes (two different
        chunks of one vertex with one 64-bit hash are not a worry).
        """
        key = hash((chunk.stream, chunk.timestamp, chunk.data))
        seen = v.seen_logs
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > 2 * _SEEN_LOGS:  # forget all but the last _SEEN_LOGS, now and then
            v.seen_logs = dict.fromkeys(list(seen)[-_SEEN_LOGS:])
        return True

    def update(self, update: StatusUpdate) -> None:
        """:meth:`apply`, so the model itself is a ``ProgressSink`` (``fan_out([model, printer])``)."""
        self.apply(update)

    def close(self) -> None:
        """Nothing to release: a ``ProgressSink`` method."""

    def take_changes(self) -> Changes:
        """What changed since the last call (a display's repaint asks this, not each message)."""
        messages = self.messages - self._messages_taken
        changes = Changes(frozenset(self._dirty_vertices), frozenset(self._dirty_requests), messages)
        self._dirty_vertices.clear()
        self._dirty_requests.clear()
        self._messages_taken = self.messages
        return changes

    def ordered(self, label: str | None = None) -> list[VertexState]:
        """Vertices (of one request, or all) in the order they started; unstarted ones last."""
        digests = self.requests[label].vertices if label is not None else list(self.vertices)
        vs = [self.vertices[d] for d in digests]
        return sorted(vs, key=lambda v: (v.order == 0, v.order))

    def failed(self) -> list[VertexState]:
        """Vertices that ended with an error (cancellations left out), in start order."""
        return sorted((self.vertices[d] for d in self._failed), key=lambda v: v.order)

    def counts(self) -> tuple[int, int]:
        """``(finished, total)`` over every vertex of every request."""
        return self._finished, len(self.vertices)

    def start_time(self) -> datetime.datetime | None:
        """When the first vertex started (kept by ``apply``: a display asks every frame)."""
        return self._start_time

    def last_time(self) -> datetime.datetime | None:
        """The latest time the daemon reported (the model's notion of "now" in replays)."""
        best: datetime.datetime | None = None
        for v in self.vertices.values():
            for start, stop in v.intervals.items():
                for t in (start, stop):
                    if t is not None and (best is None or t > best):
                        best = t
        return best
