"""Progress as JSON lines, in the shape ``buildctl --progress=rawjson`` prints: :class:`RawJSONProgress`.

Each :class:`~llblib_async.progress.StatusUpdate` becomes one line: the JSON encoding
of Go's ``client.SolveStatus`` (``vertexes``/``statuses``/``logs``/``warnings``, the
same keys, ``omitempty`` rules, RFC 3339 times and base64 bytes as Go's
``encoding/json``), so tools that read buildctl's stream read ours.

:func:`to_json` and :func:`from_json` convert one update; :func:`read_rawjson` reads a
stream back (recorded streams are how the progress model is tested).  Deviation from
buildctl: with ``labels=True`` each line also carries the ``"request"`` label of the
update (Go's decoder ignores the extra key).
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from ..errors import SourceLocation
from ..llb.image_config import go_json
from .model import BuildWarning, LogChunk, StatusRow, StatusUpdate, VertexUpdate

__all__ = ["RawJSONProgress", "dumps", "format_time", "from_json", "parse_time", "read_rawjson", "to_json"]

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def format_time(t: datetime.datetime | None) -> str:
    """A time as Go's ``time.Time`` JSON (RFC 3339 with trimmed fractional seconds)."""
    if t is None:
        return _GO_ZERO_TIME
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    utc = t.astimezone(datetime.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(text: str | None) -> datetime.datetime | None:
    """The inverse of :func:`format_time`; Go's zero time reads as ``None``."""
    if not text or text == _GO_ZERO_TIME:
        return None
    head, dot, frac = text.partition(".")
    if dot:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range(r: tuple[int, int, int, int]) -> dict[str, Any]:
    def pos(line: int, char: int) -> dict[str, int]:
        return {k: v for k, v in (("line", line), ("character", char)) if v}

    start_line, start_char, end_line, end_char = r
    return {"start": pos(start_line, start_char), "end": pos(end_line, end_char)}


def to_json(update: StatusUpdate, *, labels: bool = False) -> dict[str, Any]:
    """``update`` as the dict Go's ``json.Marshal(client.SolveStatus)`` would give (key order too)."""
    out: dict[str, Any] = {}
    if update.vertices:
        vertexes = []
        for v in update.vertices:
            d: dict[str, Any] = {}
            if v.digest:
                d["digest"] = v.digest
            if v.inputs:
                d["inputs"] = list(v.inputs)
            if v.name:
                d["name"] = v.name
            if v.started is not None:
                d["started"] = format_time(v.started)
            if v.completed is not None:
                d["completed"] = format_time(v.completed)
            if v.cached:
                d["cached"] = True
            if v.error:
                d["error"] = v.error
            if v.progress_group is not None:
                gid, gname, weak = v.progress_group
                d["progressGroup"] = {
                    k: val for k, val in (("id", gid), ("name", gname), ("weak", weak)) if val
                }
            vertexes.append(d)
        out["vertexes"] = vertexes
    if update.statuses:
        statuses = []
        for s in update.statuses:
            d = {"id": s.id}
            if s.vertex:
                d["vertex"] = s.vertex
            if s.name:
                d["name"] = s.name
            if s.total:
                d["total"] = s.total
            d["current"] = s.current
            d["timestamp"] = format_time(s.timestamp)
            if s.started is not None:
                d["started"] = format_time(s.started)
            if s.completed is not None:
                d["completed"] = format_time(s.completed)
            statuses.append(d)
        out["statuses"] = statuses
    if update.logs:
        logs = []
        for lg in update.logs:
            d = {}
            if lg.vertex:
                d["vertex"] = lg.vertex
            if lg.stream:
                d["stream"] = lg.stream
            d["data"] = _b64(lg.data)
            d["timestamp"] = format_time(lg.timestamp)
            logs.append(d)
        out["logs"] = logs
    if update.warnings:
        warnings = []
        for w in update.warnings:
            d = {}
            if w.vertex:
                d["vertex"] = w.vertex
            if w.level:
                d["level"] = w.level
            if w.short:
                d["short"] = _b64(w.short.encode())
            if w.detail:
                d["detail"] = [_b64(x.encode()) for x in w.detail]
            if w.url:
                d["url"] = w.url
            if w.sources:  # the Status stream has one SourceInfo per warning
                src = w.sources[0]
                info: dict[str, Any] = {}
                if src.filename:
                    info["filename"] = src.filename
                if src.data:
                    info["data"] = _b64(src.data)
                if src.language:
                    info["language"] = src.language
                d["sourceInfo"] = info
                if src.ranges:
                    d["range"] = [_range(r) for r in src.ranges]
            warnings.append(d)
        out["warnings"] = warnings
    if labels and update.request:
        out["request"] = update.request
    return out


def dumps(update: StatusUpdate, *, labels: bool = False) -> str:
    """One line as Go's ``json.Encoder`` writes it (compact, HTML characters escaped)."""
    return go_json(to_json(update, labels=labels))


def _pos(d: dict[str, Any] | None) -> tuple[int, int]:
    d = d or {}
    return int(d.get("line", 0)), int(d.get("character", 0))


def from_json(obj: dict[str, Any], *, request: str | None = None) -> StatusUpdate:
    """A ``client.SolveStatus`` JSON object as a :class:`StatusUpdate`.

    ``request`` labels it; by default the object's ``"request"`` key, else ``""``.
    """
    label = request if request is not None else str(obj.get("request", ""))
    vertices = tuple(
        VertexUpdate(
            digest=v.get("digest", ""),
            name=v.get("name", ""),
            inputs=tuple(v.get("inputs") or ()),
            cached=bool(v.get("cached", False)),
            started=parse_time(v.get("started")),
            completed=parse_time(v.get("completed")),
            error=v.get("error", ""),
            progress_group=(
                None
                if v.get("progressGroup") is None
                else (
                    v["progressGroup"].get("id", ""),
                    v["progressGroup"].get("name", ""),
                    bool(v["progressGroup"].get("weak", False)),
                )
            ),
        )
        for v in obj.get("vertexes") or ()
    )
    statuses = tuple(
        StatusRow(
            id=s.get("id", ""),
            vertex=s.get("vertex", ""),
            name=s.get("name", ""),
            current=int(s.get("current", 0)),
            total=int(s.get("total", 0)),
            timestamp=parse_time(s.get("timestamp")),
            started=parse_time(s.get("started")),
            completed=parse_time(s.get("completed")),
        )
        for s in obj.get("statuses") or ()
    )
    logs = tuple(
        LogChunk(
            vertex=lg.get("vertex", ""),
            stream=int(lg.get("stream", 0)),
            data=base64.b64decode(lg.get("data") or ""),
            timestamp=parse_time(lg.get("timestamp")),
        )
        for lg in obj.get("logs") or ()
    )
    warnings = []
    for w in obj.get("warnings") or ():
        info = w.get("sourceInfo")
        ranges = []
        for r in w.get("range") or ():
            (sl, sc), (el, ec) = _pos(r.get("start")), _pos(r.get("end"))
            ranges.append((sl, sc, el, ec))
        sources = (
            ()
            if info is None
            else (
                SourceLocation(
                    info.get("filename", ""),
                    base64.b64decode(info.get("data") or ""),
                    info.get("language", ""),
                    tuple(ranges),
                ),
            )
        )
        warnings.append(
            BuildWarning(
                vertex=w.get("vertex", ""),
                level=int(w.get("level", 0)),
                short=base64.b64decode(w.get("short") or "").decode(errors="replace"),
                detail=tuple(base64.b64decode(x).decode(errors="replace") for x in w.get("detail") or ()),
                url=w.get("url", ""),
                sources=sources,
            )
        )
    return StatusUpdate(
        request=label, vertices=vertices, statuses=statuses, logs=logs, warnings=tuple(warnings)
    )


def read_rawjson(lines: Iterable[str | bytes]) -> Iterator[StatusUpdate]:
    """Updates from a rawjson stream (blank lines skipped)."""
    for line in lines:
        if line.strip():
            yield from_json(json.loads(line))


class RawJSONProgress:
    """Writes each update as one JSON line (buildctl's ``--progress=rawjson``).

    Unbuffered as in Go: one line per update, flushed, nothing coalesced, so a reader
    sees exactly the daemon's stream.  ``labels=True`` adds each update's request label.
    """

    def __init__(self, out: TextIO | None = None, *, labels: bool = False) -> None:
        self._out = out if out is not None else sys.stderr
        self._labels = labels

    def update(self, update: StatusUpdate) -> None:
        self._out.write(dumps(update, labels=self._labels) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.flush()
