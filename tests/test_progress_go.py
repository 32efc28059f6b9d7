"""PlainProgress against Go's ``progressui`` plain mode, both fed the same recorded streams.

The Go side is benchmarks/progressui (a small program driving ``progressui.NewDisplay``,
BuildKit pinned in its go.mod like the LLB oracle), built once and cached.  Go's printer
is rate-limited to 10 Hz, so it is fed one message every few milliseconds with
``TTY_DISPLAY_RATE=1``; even so the interleaving of concurrent vertices depends on
timing, so the comparison is of what each vertex shows: its log lines in order, its
transfer rows' final lines and its end lines (DONE/CACHED/ERROR), with ``#N`` replaced
by the vertex name.  Single-request streams must agree on all of it.  With several
requests Go (one display per request in buildctl) prints a shared vertex's output once
per request stream; ours prints it once, so there the distinct lines are compared.
"""

from __future__ import annotations

import collections
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from progress_helpers import MULTI, SINGLE, STREAMS, stream

from llblib_async.progress import PlainProgress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from progressui_driver import build_driver

LINE = re.compile(r"^(?:\[[^]]*\] )?#(\d+) (.*)$")


@pytest.fixture(scope="module")
def driver() -> Path:
    return build_driver()


def go_plain(driver: Path, name: str) -> str:
    proc = subprocess.run(
        [str(driver), "-mode", "plain", "-in", str(STREAMS / f"{name}.jsonl.gz"), "-step", "3ms"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TTY_DISPLAY_RATE": "1"},
        timeout=300,
    )
    return proc.stdout


def py_plain(name: str) -> str:
    out = io.StringIO()
    printer = PlainProgress(out)
    for update in stream(name, labels=False):
        printer.update(update)
    printer.close()
    return out.getvalue()


def per_vertex(text: str) -> dict[str, dict[str, list[str]]]:
    """For each vertex name: its log lines, end lines and finished transfer rows, in order."""
    names: dict[str, str] = {}
    shown: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    body = text.split("\n------\n", 1)[0]
    for line in body.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        index, rest = m[1], m[2]
        if index not in names:
            names[index] = rest
            continue
        if rest == names[index] or rest == "...":
            continue
        kind = (
            "end"
            if re.match(r"(DONE|CACHED|ERROR:|CANCELED)", rest)
            else "log"
            if re.match(r"\d+\.\d+ ", rest)
            else "row"
        )
        if kind == "row" and not rest.endswith(" done"):
            continue  # progress rows in between are throttled by wall-clock time in Go
        shown[names[index]][kind].append(rest)
    return {k: dict(v) for k, v in shown.items()}


@pytest.mark.parametrize("name", SINGLE)
def test_single_request_streams_print_like_go(driver: Path, name: str) -> None:
    ours, go = per_vertex(py_plain(name)), per_vertex(go_plain(driver, name))
    assert set(ours) == set(go)
    for vertex, kinds in go.items():
        # every log line, in order; the end and finished-transfer lines (a loaded machine can
        # make Go's 10 Hz printer merge two runs' ends into one: compared as sets)
        assert ours[vertex].get("log") == kinds.get("log"), vertex
        assert set(ours[vertex].get("end", [])) == set(kinds.get("end", [])), vertex
        assert set(ours[vertex].get("row", [])) == set(kinds.get("row", [])), vertex
    ours_text, go_text = py_plain(name), go_plain(driver, name)
    # the error summary at the end is the same too
    assert ours_text.partition("\n------\n")[2] == go_text.partition("\n------\n")[2]


@pytest.mark.parametrize("name", MULTI)
def test_concurrent_request_streams_show_what_go_shows(driver: Path, name: str) -> None:
    ours, go = per_vertex(py_plain(name)), per_vertex(go_plain(driver, name))
    assert set(ours) == set(go)
    for vertex, kinds in go.items():
        assert set(ours[vertex].get("log", [])) == set(kinds.get("log", [])), vertex
        assert set(ours[vertex].get("end", [])) <= set(kinds.get("end", [])), vertex
        # a shared vertex's output once, where Go prints it once per request stream
        logs = ours[vertex].get("log", [])
        assert len(logs) == len(set(logs)), vertex
