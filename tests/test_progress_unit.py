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


def test_cached_step_shared_by_requests_prints_cached_once() -> None:
    from llblib_async.progress import VertexUpdate

    out = io.StringIO()
    p = PlainProgress(out)
    for req, t in (("a", 0.0), ("b", 5.0), ("c", 9.0)):
        p.update(StatusUpdate(request=req, vertices=(VertexUpdate("x", "step x"),)))
        p.update(
            StatusUpdate(
                request=req,
                vertices=(VertexUpdate("x", "step x", cached=True, started=at(t), completed=at(t)),),
            )
        )
        p.update(
            StatusUpdate(
                request=req,
                vertices=(VertexUpdate(f"y{req}", f"own {req}", started=at(t + 0.1), completed=at(t + 1)),),
            )
        )
    p.close()
    text = out.getvalue()
    assert text.count("CACHED") == 1
    assert text.count("DONE 0.9s") == 3
    # one stream (no labels): a vertex reported cached twice is printed twice, as Go does
    out = io.StringIO()
    p = PlainProgress(out)
    for t in (0.0, 5.0):
        p.update(
            StatusUpdate(vertices=(VertexUpdate("x", "step x", cached=True, started=at(t), completed=at(t)),))
        )
    assert out.getvalue().count("CACHED") == 2


def test_progress_group_prints_as_one_entry() -> None:
    from llblib_async.progress import VertexUpdate

    g = ("pg", "setting up", False)
    out = io.StringIO()
    p = PlainProgress(out)
    p.update(StatusUpdate(vertices=(VertexUpdate("m1", "step 1", started=at(0), progress_group=g),)))
    p.update(StatusUpdate(vertices=(VertexUpdate("m2", "step 2", progress_group=g),)))
    p.update(
        StatusUpdate(
            vertices=(
                VertexUpdate("m1", "step 1", started=at(0), completed=at(1), progress_group=g),
                VertexUpdate("m2", "step 2", cached=True, started=at(1), completed=at(1), progress_group=g),
            )
        )
    )
    p.close()
    assert out.getvalue() == "#1 setting up\n#1 DONE 1.0s\n"
