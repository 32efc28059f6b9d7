"""Plain and rawjson output of recorded Status streams: golden files, and buildctl's shapes.

Set ``LLBLIB_UPDATE_GOLDEN=1`` to rewrite tests/golden/progress/ after a deliberate change.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from pathlib import Path

import pytest
from progress_helpers import MULTI, SINGLE, raw_lines, stream

from llblib_async.progress import PlainProgress, RawJSONProgress
from llblib_async.progress.rawjson import dumps, from_json

GOLDEN = Path(__file__).resolve().parent / "golden" / "progress"
UPDATE = os.environ.get("LLBLIB_UPDATE_GOLDEN") == "1"


def plain(name: str) -> str:
    out = io.StringIO()
    printer = PlainProgress(out)
    for update in stream(name, labels=name in MULTI):
        printer.update(update)
    printer.close()
    return out.getvalue()


@pytest.mark.parametrize("name", [*SINGLE, *MULTI])
def test_plain_golden(name: str) -> None:
    text = plain(name)
    big = name in ("biglog", "clipped")  # megabytes of log lines: stored gzipped
    path = GOLDEN / f"{name}.plain.txt{'.gz' if big else ''}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        path.write_bytes(gzip.compress(data, mtime=0) if big else data)
    data = path.read_bytes()
    assert text == (gzip.decompress(data) if big else data).decode()


def _ends(text: str) -> dict[str, int]:
    """Terminal lines (DONE/CACHED/ERROR/CANCELED) per vertex number."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(?:\[[^]]*\] )?#(\d+) (DONE|CACHED|ERROR:|CANCELED)", line)
        if m:
            counts[m[1]] = counts.get(m[1], 0) + 1
    return counts


def test_plain_prints_a_rerun_vertex_done_once() -> None:
    # The printer this one replaced printed "#N DONE" for each run of a vertex the daemon
    # reports in one batch (a local source resolves, then transfers): Go prints it once.
    assert set(_ends(plain("local_build")).values()) == {1}


@pytest.mark.parametrize("name", [*SINGLE, *MULTI])
def test_plain_prints_at_most_one_end_per_run(name: str) -> None:
    printer = PlainProgress(io.StringIO())
    for update in stream(name, labels=name in MULTI):
        printer.update(update)
    runs = {
        str(p.index): len(printer.model.vertices[d].merged_intervals)
        for d, p in printer._printed.items()
        if p.index
    }
    for index, n in _ends(plain(name)).items():
        assert n <= runs[index], (index, n, runs[index])


def test_plain_labels_shared_vertices_with_the_first_request() -> None:
    lines = plain("shared").splitlines()
    assert any(line.startswith("[a] ") for line in lines)
    assert any(line.startswith("[b] ") for line in lines)
    assert sum("common step" in line and "#" in line and "DONE" not in line for line in lines) >= 1
    # its log once, not once per request
    assert sum(bool(re.search(r"#\d+ \d+\.\d+ common done$", line)) for line in lines) == 1


def test_plain_failure_ends_with_the_failed_steps_log() -> None:
    text = plain("failure")
    assert text.endswith("------\n > make:\n0.054 error: missing semicolon\n0.054 compiling\n------\n") or (
        " > make:\n" in text and text.rstrip().endswith("------")
    )
    assert "error: missing semicolon" in text.split("------")[1]


@pytest.mark.parametrize("name", [*SINGLE, *MULTI])
def test_rawjson_is_buildctls_encoding(name: str) -> None:
    # The recordings hold the daemon's stream in Go's client.SolveStatus JSON (+ "request", "_t").
    for line in raw_lines(name):
        obj = json.loads(line)
        obj.pop("_t")
        obj.pop("request", None)
        update = from_json(json.loads(line))
        assert json.loads(dumps(update)) == obj


def test_rawjson_sink_writes_one_line_per_update() -> None:
    out = io.StringIO()
    sink = RawJSONProgress(out)
    updates = stream("local_build")
    for u in updates:
        sink.update(u)
    sink.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == len(updates)
    first = json.loads(lines[0])
    assert set(first) == {"vertexes"}
    assert first["vertexes"][0]["name"] == "copy / /app/"
    labelled = io.StringIO()
    RawJSONProgress(labelled, labels=True).update(stream("shared")[0])
    assert json.loads(labelled.getvalue())["request"] in ("a", "b")


def test_rawjson_escapes_like_go() -> None:
    from llblib_async.progress import StatusUpdate, VertexUpdate

    line = dumps(StatusUpdate(vertices=(VertexUpdate(digest="d", name="a<b>&c"),)))
    assert line == '{"vertexes":[{"digest":"d","name":"a\\u003cb\\u003e\\u0026c"}]}'
