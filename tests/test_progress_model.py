"""The sans-IO progress model, fed with Status streams recorded from a real buildkitd.

The streams in tests/progress_streams/ were recorded by tests/progress_streams/record.py
(two requests sharing vertices, a 100,000-line log, a log BuildKit clipped, a failing
step, sixteen concurrent requests).
"""

from __future__ import annotations

import datetime
import tracemalloc
from typing import Any

import pytest
from progress_helpers import stream

from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async._pb.pb import Position, Range, SourceInfo
from llblib_async.progress import LogBuffer, ProgressModel, StatusUpdate, merge_intervals

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def batch(request: str = "", **kw: Any) -> StatusUpdate:
    return StatusUpdate.from_pb(control.StatusResponse(**kw), request=request)


def fed(name: str, **kw: Any) -> ProgressModel:
    model = ProgressModel(**kw)
    for update in stream(name):
        model.apply(update)
    return model


def test_two_requests_share_vertices_once() -> None:
    model = fed("shared")
    assert set(model.requests) == {"a", "b"}
    by_name = {v.name: v for v in model.vertices.values()}
    assert len(by_name) == len(model.vertices) == 4  # image, common step, a's step, b's step
    common = next(v for n, v in by_name.items() if "common step" in n)
    assert sorted(common.requests) == ["a", "b"]
    assert common.state == "done"
    assert [line.text for line in common.logs.lines] == ["common step", "common done"]
    a_only = next(v for n, v in by_name.items() if "echo a" in n)
    b_only = next(v for n, v in by_name.items() if "echo b" in n)
    assert a_only.requests == ("a",)
    assert b_only.requests == ("b",)
    assert [(ln.stream, ln.text) for ln in b_only.logs.lines] == [(2, "b 1"), (2, "b 2"), (2, "b 3")]
    # each request lists the shared vertices too, once
    for label in ("a", "b"):
        digests = model.requests[label].vertices
        assert len(digests) == len(set(digests)) == 3
        assert common.digest in digests
    assert model.counts() == (4, 4)


def test_hundred_thousand_line_log_is_bounded() -> None:
    model = fed("biglog", log_lines=500)
    step = next(v for v in model.vertices.values() if v.name.startswith("sh -c"))
    assert step.logs.total_lines == 100_000
    assert len(step.logs.lines) == 500
    assert step.logs.dropped_lines == 99_500
    assert [ln.text for ln in step.logs.tail(3)] == ["99998", "99999", "100000"]
    assert not step.logs.clipped
    assert step.state == "done"
    assert step.duration() > 4.5


def test_buildkit_clipping_is_made_visible() -> None:
    model = fed("clipped")
    step = next(v for v in model.vertices.values() if v.name.startswith("sh -c"))
    assert step.logs.clipped
    assert step.logs.lines[-1].text.startswith("[output clipped, log limit")
    assert step.logs.total_lines < 40_000  # BuildKit stopped forwarding


def test_failure_state_error_and_logs() -> None:
    model = fed("failure")
    (failed,) = model.failed()
    assert failed.name == "make"
    assert failed.state == "error"
    assert "exit code: 3" in failed.error
    assert {(ln.stream, ln.text) for ln in failed.logs.lines} == {
        (1, "compiling"),
        (2, "error: missing semicolon"),
    }


def test_local_source_runs_twice_and_is_done_once() -> None:
    model = fed("local_build")
    local = next(v for v in model.vertices.values() if v.name == "local://demo-context")
    assert len(local.intervals) == 2  # resolve, then transfer
    assert local.state == "done"
    (transfer,) = local.subprogress.values()
    assert transfer.done
    assert transfer.current == 291


def test_sixteen_concurrent_requests() -> None:
    model = fed("busy")
    assert len(model.requests) == 16
    assert model.counts() == (len(model.vertices), len(model.vertices))
    image = next(v for v in model.vertices.values() if v.name.startswith("docker-image://"))
    assert len(image.requests) == 16
    for label, req in model.requests.items():
        steps = [model.vertices[d] for d in req.vertices if model.vertices[d].name.startswith(label + " ")]
        assert len(steps) == 3, label
        assert all(s.logs.total_lines == 40 for s in steps)


def test_one_gib_log_keeps_kilobytes() -> None:
    buf = LogBuffer(max_lines=100, line_bytes=1024)
    chunk = (b"x" * 16383 + b"\n") * 64  # 1 MiB of 16 KiB lines, each cut to 1 KiB
    tracemalloc.start()
    try:
        for _ in range(1024):  # 1 GiB in all
            buf.feed(1, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert buf.total_bytes == 1 << 30
    assert buf.total_lines == 1 << 16
    assert buf.lines[-1].cut
    assert len(buf.lines) == 100
    assert peak < 8 << 20  # the chunk being split, and 100 short lines


def test_one_endless_line_is_cut() -> None:
    buf = LogBuffer(max_lines=10, line_bytes=100)
    for _ in range(1000):
        buf.feed(2, b"y" * 1000)
    buf.feed(2, b"\nnext\n")
    first, second = buf.lines
    assert first.cut
    assert first.text == "y" * 100
    assert not second.cut
    assert second.text == "next"


def test_partial_lines_per_stream() -> None:
    buf = LogBuffer()
    buf.feed(1, b"out ", at(1))
    buf.feed(2, b"err\n", at(2))
    buf.feed(1, b"line\n", at(3))
    assert [(ln.stream, ln.text, ln.timestamp) for ln in buf.lines] == [
        (2, "err", at(2)),
        (1, "out line", at(1)),
    ]
    buf.feed(1, b"unfinished")
    assert [ln.text for ln in buf.tail(5)] == ["err", "out line", "unfinished"]


def _reference_lines(
    chunks: list[tuple[int, bytes, datetime.datetime]], line_bytes: int
) -> list[tuple[int, str, datetime.datetime, bool]]:
    """What a log of ``chunks`` holds, the slow and obvious way: per stream, bytes up to each
    newline, cut at ``line_bytes``, stamped with the chunk a line began in."""
    pending: dict[int, tuple[bytearray, datetime.datetime]] = {}
    lines = []
    for out, data, ts in chunks:
        for i, piece in enumerate(data.split(b"\n")):
            if i:  # a newline ended the stream's line
                buf, began = pending.pop(out, (bytearray(), ts))
                lines.append((out, bytes(buf), began, len(buf) > line_bytes))
            if piece:
                buf, began = pending.setdefault(out, (bytearray(), ts))
                buf += piece
    return [(s, b[:line_bytes].decode(errors="replace"), t, cut) for s, b, t, cut in lines]


@pytest.mark.parametrize("seed", range(6))
def test_log_buffer_keeps_what_the_obvious_splitter_keeps(seed: int) -> None:
    """However the output is cut into chunks (one whole line, many lines, lines left open,
    lines too long, bytes that are not UTF-8, ``\r\n``), the log holds the same lines."""
    import random

    rng = random.Random(seed)
    pieces = [b"short", b"x" * 70, b"\xff\xfe broken utf-8", "héllo wörld".encode(), b"crlf\r", b""]
    chunks = []
    for i in range(600):
        n = rng.choice([1, 1, 1, 2, 3])
        data = b"".join(rng.choice(pieces) + (b"\n" if rng.random() < 0.9 else b"") for _ in range(n))
        chunks.append((rng.choice([1, 2]), data, at(i)))
    buf = LogBuffer(max_lines=50, line_bytes=64)
    for out, data, ts in chunks:
        buf.feed(out, data, ts)
    expected = _reference_lines(chunks, 64)
    assert [(ln.stream, ln.text, ln.timestamp, ln.cut) for ln in buf.lines] == expected[-50:]
    assert buf.total_lines == len(expected)
    assert buf.dropped_lines == len(expected) - 50
    assert buf.total_bytes == sum(len(d) for _, d, _ in chunks)
    open_lines = [ln.text for ln in buf.partial]  # the tail ends with the lines still open
    assert [ln.text for ln in buf.tail(5)] == ([t for _, t, _, _ in expected] + open_lines)[-5:]


def test_shared_vertex_copies_are_dropped_long_after() -> None:
    """A request joining a shared vertex late gets BuildKit's replay of its earlier output:
    the last 256 chunks (at least) are known, so the replay is not shown twice."""
    vertex = control.Vertex(digest="sha256:s", name="shared", started=at(0))
    model = ProgressModel()
    model.apply(batch("a", vertexes=[vertex]))

    def chunk(text: bytes, i: int) -> control.VertexLog:
        return control.VertexLog(vertex="sha256:s", stream=1, msg=text, timestamp=at(i))

    logs = [chunk(b"line %d\n" % i, i) for i in range(700)]
    for log in logs:
        model.apply(batch("a", logs=[log]))
    model.apply(batch("b", vertexes=[vertex]))
    for replayed in logs[-256:]:  # b's stream replays what the vertex printed
        assert not model.apply(batch("b", logs=[replayed]))
    v = model.vertices["sha256:s"]
    assert v.logs.total_lines == 700
    assert v.requests == ("a", "b")
    assert model.apply(batch("b", logs=[chunk(b"new\n", 800)]))
    assert [ln.text for ln in v.logs.tail(2)] == ["line 699", "new"]


def test_warnings_carry_source_locations() -> None:
    model = ProgressModel()
    model.apply(
        batch(
            vertexes=[control.Vertex(digest="sha256:w", name="lint", started=at(0))],
            warnings=[
                control.VertexWarning(
                    vertex="sha256:w",
                    level=1,
                    short=b"FROM uses a moving tag",
                    detail=[b"pin the digest"],
                    url="https://example.invalid/rule",
                    info=SourceInfo(filename="Dockerfile", data=b"FROM x\nRUN y\n", language="Dockerfile"),
                    ranges=[Range(start=Position(line=1), end=Position(line=2, character=5))],
                )
            ],
            request="app",
        )
    )
    (w,) = model.warnings
    assert w.location == "Dockerfile:1-2"
    assert w.detail == ("pin the digest",)
    (src,) = w.sources
    assert src.data == b"FROM x\nRUN y\n"
    assert src.ranges == ((1, 0, 2, 5),)
    assert model.requests["app"].warnings == [w]
    assert model.vertices["sha256:w"].warnings == (w,)


def test_changes_are_coalesced_until_taken() -> None:
    model = ProgressModel()
    for i in range(100):
        model.apply(
            batch(request="r", logs=[control.VertexLog(vertex="sha256:a", stream=1, msg=b"%d\n" % i)])
        )
    changes = model.take_changes()
    assert changes.vertices == {"sha256:a"}
    assert changes.requests == {"r"}
    assert changes.messages == 100
    assert not model.take_changes()


def test_intervals_merge_like_go() -> None:
    assert merge_intervals([(at(0), at(2)), (at(1), at(3)), (at(5), at(6))]) == [
        (at(0), at(3)),
        (at(5), at(6)),
    ]
    assert merge_intervals([(at(0), None), (at(1), at(3))]) == [(at(0), None)]
    assert merge_intervals([(at(0), at(1)), (at(0.5), None), (at(9), at(10))]) == [(at(0), None)]


def test_vertex_states() -> None:
    model = ProgressModel()
    model.apply(
        batch(
            vertexes=[
                control.Vertex(digest="w", name="waiting"),
                control.Vertex(digest="r", name="running", started=at(0)),
                control.Vertex(digest="c", name="cached", cached=True, started=at(0), completed=at(0)),
                control.Vertex(digest="e", name="err", started=at(0), completed=at(1), error="boom"),
                control.Vertex(
                    digest="x", name="x", started=at(0), completed=at(1), error="context canceled"
                ),
            ]
        )
    )
    states = {d: v.state for d, v in model.vertices.items()}
    assert states == {"w": "waiting", "r": "running", "c": "cached", "e": "error", "x": "canceled"}
    assert model.vertices["r"].duration(now=at(2.5)) == pytest.approx(2.5)
    assert [v.name for v in model.failed()] == ["err"]


def test_progress_group_is_one_vertex_like_go() -> None:
    # tests/progress_streams/grouped: three steps of one llb.ProgressGroup between two others
    plain = fed("grouped")
    merged = fed("grouped", merge_groups=True)
    assert {v.name for v in plain.vertices.values()} >= {"setup step 0", "setup step 1", "setup step 2"}
    names = [v.name for v in merged.ordered()]
    assert "setting up" in names
    assert not any(n.startswith("setup step") for n in names)
    group = merged.vertices["pg-setup"]
    members = [v for v in plain.vertices.values() if v.name.startswith("setup step")]
    assert group.started == min(v.started for v in members if v.started is not None)
    assert group.completed == max(v.completed for v in members if v.completed is not None)
    assert group.state == "done"
    assert len(group.merged_intervals) == 3
    assert [line.text for line in group.logs.lines] == [
        f"setup{k} line {i}" for k in range(3) for i in (1, 2, 3)
    ]
    assert merged.counts() == (len(merged.vertices), len(merged.vertices))


def test_progress_group_hidden_until_a_strong_member_starts() -> None:
    from llblib_async.progress import VertexUpdate
    from llblib_async.progress.state import ProgressGroups

    weak, strong = ("g", "group", True), ("g", "group", False)
    groups = ProgressGroups()
    out = groups.merge(StatusUpdate(vertices=(VertexUpdate("a", "a", started=at(0), progress_group=weak),)))
    assert out.vertices == ()
    out = groups.merge(StatusUpdate(vertices=(VertexUpdate("b", "b", progress_group=strong),)))
    assert out.vertices == ()
    out = groups.merge(
        StatusUpdate(vertices=(VertexUpdate("b", "b", started=at(1), error="boom", progress_group=strong),))
    )
    assert [(v.digest, v.name, v.started, v.error) for v in out.vertices] == [
        ("g", "group", at(0), "boom"),
        ("g", "group", at(1), "boom"),
    ]
    model = ProgressModel()
    model.apply(out)
    assert model.vertices["g"].state == "running"


@pytest.mark.parametrize("kind", ["VertexUpdate", "StatusRow", "LogChunk", "BuildWarning", "StatusUpdate"])
def test_status_values_build_like_the_dataclasses_they_are(kind: str) -> None:
    """The Status values get a quicker ``__init__`` than ``frozen=True`` generates: the same
    signature, the same values, still frozen, copied by ``replace`` and pickled alike."""
    import dataclasses
    import inspect
    import pickle

    from llblib_async import progress

    cls = getattr(progress, kind)
    fields = dataclasses.fields(cls)
    plain = dataclasses.make_dataclass(
        "Plain" + kind,
        [(f.name, Any) if f.default is dataclasses.MISSING else (f.name, Any, f.default) for f in fields],
    )

    def parameters(c: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(c).parameters.values()]

    assert parameters(cls) == parameters(plain)
    required = [f"{f.name}-value" for f in fields if f.default is dataclasses.MISSING]
    positional = cls(*required)
    keyword = cls(**{f.name: v for f, v in zip(fields, required, strict=False)})
    reference = plain(*required)
    for value in (positional, keyword):
        assert dataclasses.astuple(value) == dataclasses.astuple(reference)
        assert value == positional
        assert hash(value) == hash(positional)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, fields[0].name, "changed")
        assert pickle.loads(pickle.dumps(value)) == value
    changed = dataclasses.replace(positional, **{fields[0].name: "other"})
    assert getattr(changed, fields[0].name) == "other"
    if required:
        with pytest.raises(TypeError, match="missing"):
            cls()
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls(*required, nonsense=1)
