"""The Textual progress display, driven by recorded Status streams (Textual's pilot and snapshots)."""

from __future__ import annotations

import io
import json
import os
import pty
import sys
from pathlib import Path
from typing import Any

import pytest
from progress_helpers import stream
from pty_helpers import Terminal
from rich.text import Text

from llblib_async.errors import ProgressModeError
from llblib_async.progress import (
    NullProgress,
    PlainProgress,
    ProgressModel,
    RawJSONProgress,
    open_progress,
    resolve_mode,
)
from llblib_async.progress.tui import ErrorView, ProgressApp, ProgressView, RequestPane, TTYProgress
from llblib_async.terminal import claim_terminal


def fed(name: str, limit: int | None = None) -> ProgressModel:
    model = ProgressModel()
    for update in stream(name)[:limit]:
        model.apply(update)
    return model


def app_for(name: str, limit: int | None = None) -> ProgressApp:
    model = fed(name, limit)
    return ProgressApp(model, clock=model.last_time)


def labels(pane: RequestPane) -> list[str]:
    """The pane's step lines (``  ``-indented children under them), without the title."""
    out = []
    for line in pane.text.plain.splitlines()[1:]:
        if line.startswith("    "):
            out.append("  " + line[6:])
        else:
            out.append(line[2:])
    return out


async def test_one_pane_per_request_and_shared_vertices_once() -> None:
    app = app_for("shared")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        panes = list(app.panes.values())
        assert sorted(p.label for p in panes) == ["a", "b"]
        by_label = {p.label: labels(p) for p in panes}
        owner = app.model.vertices[
            next(d for d, v in app.model.vertices.items() if "common" in v.name)
        ].requests[0]
        other = "a" if owner == "b" else "b"
        common_owner = [ln for ln in by_label[owner] if "common step" in ln]
        common_other = [ln for ln in by_label[other] if "common step" in ln]
        assert common_owner
        assert "shared" not in common_owner[0]
        assert common_other == [f"{common_other[0]}"]
        assert f"(shared: see [{owner}])" in common_other[0]
        assert all("✔" in ln for ln in by_label["a"] if not ln.startswith("  "))
        summary = app.query_one("#summary", ProgressView).lines[0].plain
        assert "4/4 steps · 2 requests" in str(summary)
        assert not app.query_one(ErrorView).has_class("-shown")


async def test_error_view_shows_the_failed_steps_log() -> None:
    app = app_for("failure")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        view = app.query_one(ErrorView)
        assert view.has_class("-shown")
        text = view.text.plain
        assert "✖ [build] make" in text
        assert "exit code: 3" in text
        assert "│ error: missing semicolon" in text
        assert "│ compiling" in text
        assert "FAILED" in next(iter(app.panes.values())).text.plain.splitlines()[0]


async def test_running_step_shows_its_live_log_and_transfers() -> None:
    model = fed("biglog", limit=20)  # the seq step still running
    app = ProgressApp(model, clock=model.last_time)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        (pane,) = app.panes.values()
        lines = labels(pane)
        step = next(i for i, ln in enumerate(lines) if ln.startswith("▶ sh -c"))
        live = [ln.strip() for ln in lines[step + 1 :] if ln.startswith("  ")]
        assert 0 < len(live) <= 6
        last = model.vertices[next(d for d, v in model.vertices.items() if v.name.startswith("sh -c"))]
        assert live[-1] == last.logs.tail(1)[0].text
        assert any("resolve" in ln for ln in lines)  # the image's transfer row
        # more output arrives: the next frame shows it, not a frame per message
        frames = app.frames
        for update in stream("biglog")[20:30]:
            model.apply(update)
        for _ in range(100):  # the next frame (a loaded machine may take a while to get to it)
            await pilot.pause(0.1)
            if app.frames > frames:
                break
        assert app.frames > frames
        assert labels(pane)[step + 1 :][-1].strip() == last.logs.tail(1)[0].text


async def test_display_suspends_while_a_container_owns_the_terminal() -> None:
    updates = stream("shared")
    async with TTYProgress(headless=True, size=(100, 30)) as tty:
        for u in updates[:10]:
            tty.update(u)
        first = tty.app
        assert first is not None
        async with claim_terminal():
            assert tty.suspended
            assert tty.app is None  # the app stopped drawing (headless/inline: stopped, not paused)
            for u in updates[10:]:
                tty.update(u)  # progress still lands in the model meanwhile
        assert not tty.suspended
        assert tty.app is not None
        assert tty.app is not first
        assert tty.restarts == 1
        await tty.app.ready.wait()
        assert sorted(p.label for p in tty.app.panes.values()) == ["a", "b"]
        assert tty.model.counts() == (4, 4)
    assert tty.app is None
    # the suspender is gone with the display
    async with claim_terminal():
        assert not tty.suspended


def test_tty_snapshot_of_a_failed_build(snap_compare: Any) -> None:
    assert snap_compare(app_for("failure"), terminal_size=(110, 24))


def test_tty_snapshot_of_two_requests(snap_compare: Any) -> None:
    assert snap_compare(app_for("shared"), terminal_size=(110, 24))


def test_labels_are_text_not_markup() -> None:
    from llblib_async.progress.tui import vertex_label

    model = ProgressModel()
    from llblib_async.progress import StatusUpdate, VertexUpdate

    model.apply(StatusUpdate(vertices=(VertexUpdate(digest="d", name="[internal] load [bold]x"),)))
    label = vertex_label(model.vertices["d"], now=None)
    assert isinstance(label, Text)
    assert "[internal] load [bold]x" in label.plain


# --- choosing a display -----------------------------------------------------------------


def test_auto_is_plain_off_a_terminal_and_tty_on_one() -> None:
    assert resolve_mode(None, out=io.StringIO(), env={}) == "plain"
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as term:
            assert resolve_mode(None, out=term, env={}) == "tty"
            assert resolve_mode("tty-fullscreen", out=term, env={}) == "tty-fullscreen"
    finally:
        os.close(master)
        os.close(slave)


def test_buildkit_progress_env_is_honoured_and_the_argument_wins() -> None:
    assert resolve_mode(None, out=io.StringIO(), env={"BUILDKIT_PROGRESS": "rawjson"}) == "rawjson"
    assert resolve_mode("quiet", out=io.StringIO(), env={"BUILDKIT_PROGRESS": "rawjson"}) == "quiet"
    assert resolve_mode(None, out=io.StringIO(), env={"BUILDKIT_PROGRESS": "PLAIN"}) == "plain"


def test_bad_modes_raise_typed_errors() -> None:
    with pytest.raises(ProgressModeError, match="'fancy'") as err:
        resolve_mode("fancy", out=io.StringIO(), env={})
    assert err.value.mode == "fancy"
    with pytest.raises(ProgressModeError, match="not a terminal"):
        resolve_mode("tty", out=io.StringIO(), env={})
    with pytest.raises(ProgressModeError, match="'nope'"):
        resolve_mode(None, out=io.StringIO(), env={"BUILDKIT_PROGRESS": "nope"})


@pytest.mark.parametrize(
    ("mode", "kind"), [("plain", PlainProgress), ("rawjson", RawJSONProgress), ("quiet", NullProgress)]
)
async def test_open_progress_gives_the_display(mode: str, kind: type) -> None:
    out = io.StringIO()
    async with open_progress(mode, out=out, env={}) as sink:
        assert isinstance(sink, kind)
        for u in stream("local_build"):
            sink.update(u)
    if mode == "quiet":
        assert out.getvalue() == ""
    else:
        assert "exporting to client directory" in out.getvalue()


async def test_no_color_keeps_the_terminals_own_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    async with TTYProgress(headless=True, size=(80, 20)) as tty:
        assert tty.app is not None
        assert tty.app.ansi_color
    monkeypatch.delenv("NO_COLOR")
    async with TTYProgress(headless=True, size=(80, 20)) as tty:
        assert tty.app is not None
        assert not tty.app.ansi_color


FULL_SCREEN_CHILD = """
import asyncio, json, os, sys

sys.path.insert(0, sys.argv[1])
from progress_helpers import stream
from pty_helpers import Terminal

from llblib_async.progress.tui import TTYProgress
from llblib_async.terminal import claim_terminal


async def main() -> None:
    updates = stream("shared")
    async with TTYProgress(inline=False) as tty:
        for u in updates[:10]:
            tty.update(u)
        app = tty.app
        frames = app.frames
        async with claim_terminal():
            os.write(1, b"\\r\\nOWNED suspended=%d\\r\\n" % tty.suspended)
            for u in updates[10:]:
                tty.update(u)
        while app.frames == frames:  # the app draws again, on its own timer
            await asyncio.sleep(0.05)
        result = {"same_app": tty.app is app, "restarts": tty.restarts, "counts": tty.model.counts()}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
    os.write(1, b"\\r\\nDONE\\r\\n")


asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_full_screen_display_steps_aside_with_app_suspend_on_a_terminal(tmp_path: Path) -> None:
    """Full screen on a real pty, Textual's driver can suspend: a container taking the
    terminal sees the normal screen (the alternate one left), and the same app draws again
    after, with what arrived meanwhile."""
    script, out = tmp_path / "child.py", tmp_path / "result.json"
    script.write_text(FULL_SCREEN_CHILD)
    term = Terminal([sys.executable, str(script), str(Path(__file__).parent), str(out)])
    try:
        before = term.expect(r"OWNED suspended=(\d)")
        assert before.group(1) == b"1"
        screen_before = term.consumed
        term.expect("DONE")
        screen_after = term.consumed
    finally:
        code = term.close()
    assert code == 0
    # entered the alternate screen, left it for the container, entered it again, left at the end
    assert screen_before.count(ALT_SCREEN_ON) == 1
    assert screen_before.rindex(ALT_SCREEN_OFF) > screen_before.rindex(ALT_SCREEN_ON)
    assert screen_after.count(ALT_SCREEN_ON) == 1
    assert screen_after.rindex(ALT_SCREEN_OFF) > screen_after.rindex(ALT_SCREEN_ON)
    result = json.loads(out.read_text())
    assert result == {"same_app": True, "restarts": 0, "counts": [4, 4]}


ALT_SCREEN_ON, ALT_SCREEN_OFF = b"\x1b[?1049h", b"\x1b[?1049l"
