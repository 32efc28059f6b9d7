"""The plain progress printer, fed with Status batches (no daemon)."""

from __future__ import annotations

import datetime
import io
from typing import Any

from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async.progress import PlainProgress, RecordingProgress, StatusUpdate

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def batch(**kw: Any) -> StatusUpdate:
    return StatusUpdate.from_pb(control.StatusResponse(**kw))


def test_vertex_lifecycle_prints_name_logs_and_done() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.update(batch(vertexes=[control.Vertex(digest="sha256:a", name="copy /src", started=at(0))]))
    p.update(
        batch(
            logs=[control.VertexLog(vertex="sha256:a", stream=1, msg=b"line one\nline ", timestamp=at(0.5))]
        )
    )
    p.update(batch(logs=[control.VertexLog(vertex="sha256:a", stream=1, msg=b"two\n", timestamp=at(0.6))]))
    p.update(
        batch(
            vertexes=[control.Vertex(digest="sha256:a", name="copy /src", started=at(0), completed=at(1.25))]
        )
    )
    # Go's format: log lines carry the seconds since the step started
    assert out.getvalue() == "#1 copy /src\n#1 0.500 line one\n#1 0.500 line two\n#1 DONE 1.2s\n"


def test_cached_error_and_canceled_vertices() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    p.update(
        batch(
            vertexes=[
                control.Vertex(digest="sha256:c", name="cached", cached=True, started=at(0), completed=at(0)),
                control.Vertex(digest="sha256:e", name="fails", started=at(0), completed=at(2), error="boom"),
                control.Vertex(
                    digest="sha256:x",
                    name="stopped",
                    started=at(0),
                    completed=at(1),
                    error="context canceled",
                ),
            ]
        )
    )
    # completed vertices are printed in the order they ended, a blank line between two
    assert out.getvalue().splitlines() == [
        "#1 cached",
        "#1 CACHED",
        "",
        "#2 stopped",
        "#2 CANCELED",
        "",
        "#3 fails",
        "#3 ERROR: boom",
    ]
    assert p.errors == ["boom"]


def test_status_rows_and_request_labels() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    v = control.Vertex(digest="sha256:l", name="[internal] load local ctx", started=at(0))
    row = control.VertexStatus(
        id="transferring ctx:",
        vertex="sha256:l",
        current=2_500_000,
        total=0,
        started=at(0),
        completed=at(0.5),
    )
    p.update(StatusUpdate.from_pb(control.StatusResponse(vertexes=[v], statuses=[row]), request="app"))
    assert out.getvalue().splitlines() == [
        "[app] #1 [internal] load local ctx",
        "[app] #1 transferring ctx: 2.50MB 0.5s done",
    ]


def test_recording_progress_merges_vertices_by_digest() -> None:
    rec = RecordingProgress()
    rec.update(batch(vertexes=[control.Vertex(digest="sha256:a", name="a", started=at(0))]))
    rec.update(batch(vertexes=[control.Vertex(digest="sha256:a", name="a", started=at(0), completed=at(1))]))
    rec.update(batch(logs=[control.VertexLog(vertex="sha256:a", stream=2, msg=b"err")]))
    assert rec.vertices["sha256:a"].completed == at(1)
    assert rec.logs("sha256:a") == b"err"
