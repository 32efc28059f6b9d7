"""The live progress display: a Textual app over the :class:`~llblib_async.progress.ProgressModel`.

:class:`TTYProgress` is the :class:`~llblib_async.progress.ProgressSink` (``--progress=tty``);
:class:`ProgressApp` is the Textual app it runs:

* a summary line (steps finished, requests, elapsed time);
* one pane per request (its label, ``finished/total``), holding a tree of its vertices
  in the order they started, each with its state, duration and ``CACHED``; a vertex's
  children are its transfers (bytes, total, rate) and, while it runs, the last lines
  of its log; a vertex shared by several requests is shown in the pane of the first
  and named as shared in the others;
* an error view with the failing step, its error, the end of its log, and the
  warnings with their source locations.

The app repaints at ``refresh_rate`` Hz from :meth:`ProgressModel.take_changes`, never
once per Status message, so a build that prints a million log lines costs the display
what it costs the model.  A frame costs what changed on screen: every pane is lines of
one :class:`ProgressView` (Textual's line API); a :class:`RequestPane` re-builds its
lines only when its steps changed (panes out of sight when scrolled to), and the view
redraws only the lines that differ and lays the screen out only when its height grows.

It runs inline (under the prompt, its last frame left on the terminal) by default, or
full screen with ``inline=False``.  While an interactive container owns the terminal
(``llblib_async.terminal.claim_terminal``) it is suspended: ``App.suspend()`` where the
driver supports it, else the app is stopped and a new one started on the same model
afterwards (Textual's inline driver cannot suspend), so nothing is lost.

Textual is imported by this module only: ``import llblib_async`` does not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, ClassVar

from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from ..terminal import add_terminal_suspender
from .model import StatusUpdate
from .state import LogLine, ProgressModel, SubProgress, VertexState

__all__ = ["ProgressApp", "ProgressView", "RequestPane", "TTYProgress"]

Clock = Callable[[], datetime.datetime | None]

_LOG_LINES = 6  # log lines shown under a running vertex
_COMPACT_AFTER = 4  # with more requests than this, each pane shows less (see RequestPane)
_ERROR_LOG_LINES = 20  # log lines shown for a failed vertex
_BLANK = Text()  # one object for every empty line: the view compares lines by identity first
_GROW_BY = 8  # while steps run, the panes' height grows by half or at least this many lines

_ICONS = {
    "waiting": ("·", "dim"),
    "running": ("▶", "bold blue"),
    "done": ("✔", "green"),
    "cached": ("✔", "cyan"),
    "error": ("✖", "bold red"),
    "canceled": ("⊘", "yellow"),
}


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    minutes, sec = divmod(int(s), 60)
    return f"{minutes}m{sec:02d}s"


def _duration_text(v: VertexState, now: datetime.datetime | None) -> str:
    """``3s`` while it runs (whole seconds: one repaint a second), ``3.2s`` when it ended."""
    if v.state == "running" and v.intervals:
        return f"{int(v.duration(now))}s"
    if v.state in ("done", "error", "canceled") and v.intervals:
        return _seconds(v.duration(now))
    return ""


def vertex_label(v: VertexState, *, now: datetime.datetime | None, shared_from: str = "") -> Text:
    """``▶ name  3.2s`` with the state's icon and colour (plain text: names may hold ``[``)."""
    icon, style = _ICONS[v.state]
    label = Text()
    label.append(f"{icon} ", style=style)
    label.append(v.name or v.digest[:19])
    duration = _duration_text(v, now)
    if duration:
        label.append(f"  {duration}", style="dim")
    if v.state == "cached":
        label.append("  CACHED", style="cyan")
    elif v.state == "error":
        label.append("  ERROR", style="bold red")
    elif v.state == "canceled":
        label.append("  CANCELED", style="yellow")
    if v.logs.clipped:
        label.append("  [log clipped by BuildKit]", style="yellow")
    if shared_from:
        label.append(f"  (shared: see [{shared_from}])", style="dim")
    return label


def row_label(row: SubProgress) -> Text:
    """A transfer: ``↓ sha256:… 12.0MB / 40.0MB 3.2MB/s`` (rate while it runs)."""
    text = Text("↳ " if row.done else "↓ ", style="green" if row.done else "blue")
    text.append(row.id)
    if row.total:
        text.append(f" {_human_bytes(row.current)} / {_human_bytes(row.total)}")
    elif row.current:
        text.append(f" {_human_bytes(row.current)}")
    if row.done:
        text.append(f"  {_seconds(row.duration())} done", style="dim")
    elif row.rate > 0:
        text.append(f"  {_human_bytes(row.rate)}/s", style="bold")
    return text


class TextView(Widget):
    """A block of text that repaints in place: a new text of as many lines as the old one
    refreshes only this widget's region; only a change of height lays the screen out again
    (``Static.update`` always does, which made every frame a full relayout)."""

    DEFAULT_CSS = """
    TextView { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = Text()

    def render(self) -> Text:
        return self.text

    def show(self, text: Text) -> None:
        if text == self.text:
            return
        layout = text.plain.count("\n") != self.text.plain.count("\n")
        self.text = text
        self.refresh(layout=layout)


def _child(text: Text, *, last: bool) -> Text:
    """A line under a step: ``├ text``, or ``└ text`` for the last one."""
    line = Text()
    line.append("    └ " if last else "    ├ ", style="dim")
    return line.append_text(text)


def _log_child(line: LogLine, last: bool) -> Text:
    return _child(Text(line.text, style="red" if line.stream == 2 else ""), last=last)


def _hidden_line(hidden: int) -> Text:
    return Text(f"  … {hidden} earlier finished step{'s' if hidden != 1 else ''}", style="dim")


def _vertex_line(v: VertexState, now: datetime.datetime | None, shared_from: str) -> Text:
    return Text("  ").append_text(vertex_label(v, now=now, shared_from=shared_from))


class RequestPane:
    """One request: its title and the tree of its steps, as lines of text (not a widget).

    Every pane is drawn by the one :class:`ProgressView`; a pane is re-built only when one
    of its vertices changed (or a running one's whole-second duration did), and only its
    lines that differ are drawn again.  A long build shows its running and failed steps
    and the last ``finished_lines`` finished ones.
    """

    def __init__(self, label: str, model: ProgressModel, clock: Clock, *, finished_lines: int = 8) -> None:
        self.label = label
        self.model = model
        self.clock = clock
        self.finished_lines = finished_lines
        self.log_lines = _LOG_LINES
        self.lines: list[Text] = []
        self._ticks: tuple[int, ...] = ()  # the running steps' whole seconds last shown
        self._made: dict[Hashable, Text] = {}  # the lines shown, by what they show
        #: a step of the request changed since the lines were built (the pane was out of sight)
        self.stale = True

    def _title(self, done: int, total: int, failed: bool) -> Text:
        title = Text()
        title.append(f"[{self.label or 'build'}] ", style="bold")
        title.append(f"{done}/{total} steps")
        if failed:
            title.append("  FAILED", style="bold red")
        return title

    @property
    def text(self) -> Text:
        """The pane's lines as one text (title first)."""
        return Text("\n").join(self.lines)

    def _visible(self) -> tuple[list[VertexState], int]:
        req = self.model.requests[self.label]
        shown = {d for d in req.running} | {d for d in req.failed}
        finished = 0
        for digest in reversed(req.vertices):
            if finished >= self.finished_lines:
                break
            v = self.model.vertices[digest]
            if v.state not in ("waiting", "running") and digest not in shown:
                shown.add(digest)
                finished += 1
        vs = sorted((self.model.vertices[d] for d in shown), key=lambda v: (v.order == 0, v.order))
        hidden = req.finished - sum(v.state not in ("waiting", "running") for v in vs)
        return vs, hidden

    def refresh_from_model(self, changed: bool = True) -> bool:
        """Re-build the lines if ``changed`` (one of the request's vertices changed) or a
        running step's whole-second duration did; says whether it did."""
        req = self.model.requests.get(self.label)
        if req is None:
            return False
        if len(self.model.requests) > _COMPACT_AFTER:  # many panes: each one shorter
            self.log_lines, self.finished_lines = 3, min(self.finished_lines, 3)
        now = self.clock()
        ticks = tuple(int(self.model.vertices[d].duration(now)) for d in sorted(req.running))
        if not changed and ticks == self._ticks:
            return False
        self._ticks = ticks
        done, total = req.counts()
        # A frame re-builds most panes (their steps print), but few of their lines changed:
        # a line's text is made once and kept while the pane shows it.
        made, self._made = self._made, {}

        def line(key: Hashable, make: Callable[..., Text], *args: Any) -> Text:
            text = made.get(key)
            if text is None:
                text = make(*args)
            self._made[key] = text
            return text

        lines = [line(("title", done, total, bool(req.failed)), self._title, done, total, bool(req.failed))]
        vs, hidden = self._visible()
        if hidden > 0:
            lines.append(line(("hidden", hidden), _hidden_line, hidden))
        for v in vs:
            owner = v.requests[0] if v.requests else self.label
            shared_from = owner if owner != self.label else ""
            key = (v.digest, v.state, v.name, _duration_text(v, now), v.logs.clipped, shared_from)
            lines.append(line(key, _vertex_line, v, now, shared_from))
            if shared_from:  # a shared vertex's details are in the owner's pane
                continue
            rows = [row_label(row) for row in v.subprogress.values()]
            logs = v.logs.tail(self.log_lines) if v.state == "running" else []
            n = len(rows) + len(logs)
            lines.extend(_child(row, last=i == n - 1) for i, row in enumerate(rows))
            for i, log in enumerate(logs, len(rows)):
                lines.append(line((log, i == n - 1), _log_child, log, i == n - 1))
        # A pane never shrinks while the build runs: steps start and end all the time, and
        # each change of height would lay the screen out again.
        if len(lines) < len(self.lines) and (req.running or req.finished < len(req.vertices)):
            lines.extend([_BLANK] * (len(self.lines) - len(lines)))
        self.lines = lines
        return True


class ProgressView(Widget):
    """Every request's pane in one widget, drawn line by line (Textual's line API).

    Each line is a :class:`~rich.text.Text` turned into a :class:`~textual.strip.Strip`
    once; a frame redraws only the lines that differ from the last frame's, and lays the
    screen out again only when the number of lines changes (panes are separated by an
    empty line).
    """

    DEFAULT_CSS = """
    ProgressView { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[Text] = []
        self._strips: list[Strip | None] = []
        self._width = -1
        #: how often a new number of lines made Textual lay the screen out again
        self.layouts = 0

    def show(self, lines: list[Text]) -> None:
        """Draw ``lines`` (only those that changed; a relayout only for a new line count)."""
        old = self.lines
        self.lines = lines
        if len(lines) != len(old):
            self.layouts += 1
            self._strips = [None] * len(lines)
            self.refresh(layout=True)
            return
        dirty = [y for y, (a, b) in enumerate(zip(old, lines, strict=True)) if a is not b and a != b]
        if not dirty:
            return
        width = self.size.width
        for y in dirty:
            self._strips[y] = None
        self.refresh(*(Region(0, y, width, 1) for y in dirty))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines)

    def render_line(self, y: int) -> Strip:
        return self.render_lines(Region(0, y, self.size.width, 1))[0]

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines in ``crop``, each made a strip once (the view has no border or padding
        for Textual's styles cache to add, and in an inline app Textual asks for every line
        of the screen every frame)."""
        width = self.size.width
        if width != self._width:
            self._width = width
            self._strips = [None] * len(self.lines)
        style = None
        strips: list[Strip] = []
        for y in crop.line_range:
            strip = self._strips[y] if y < len(self._strips) else None
            if strip is None:
                if style is None:
                    style = self.rich_style
                    background = self.background_colors[1]
                    filters = self.get_line_filters()
                    console = self.app.console
                if y >= len(self.lines):
                    strips.append(Strip.blank(width, style))
                    continue
                text = self.lines[y]
                if text.cell_len > width:
                    text = text.copy()
                    text.truncate(width, overflow="ellipsis")
                segments = list(Segment.apply_style(text.render(console), style))
                if text.cell_len < width:
                    segments.append(Segment(" " * (width - text.cell_len), style))
                strip = Strip(segments, max(width, text.cell_len))  # one strip: each costs 7 caches
                for line_filter in filters:
                    strip = strip.apply_filter(line_filter, background)
                self._strips[y] = strip
            strips.append(strip)
        if crop.x or crop.width != width:
            strips = [strip.crop(crop.x, crop.right) for strip in strips]
        return strips


class ErrorView(TextView):
    """The failed steps: name, error, source location of warnings, end of the log."""

    DEFAULT_CSS = """
    ErrorView { height: auto; border: round $error; padding: 0 1; display: none; }
    ErrorView.-shown { display: block; }
    """

    def show_failures(self, model: ProgressModel) -> None:
        failed = model.failed()
        if not failed:
            return
        text = Text()
        for i, v in enumerate(failed):
            if i:
                text.append("\n")
            labels = ", ".join(r or "build" for r in v.requests)
            text.append(f"✖ [{labels}] {v.name}\n", style="bold red")
            text.append(f"{v.error}\n")
            for w in v.warnings:
                where = f" ({w.location})" if w.location else ""
                text.append(f"warning: {w.short}{where}\n", style="yellow")
            lines = v.logs.tail(_ERROR_LOG_LINES)
            if v.logs.dropped_lines or len(lines) < v.logs.total_lines:
                text.append(f"… {v.logs.total_lines - len(lines)} earlier lines\n", style="dim")
            for line in lines:
                text.append(f"│ {line.text}\n", style="red" if line.stream == 2 else "")
        text.rstrip()
        self.show(text)
        self.add_class("-shown")


class ProgressApp(App[None]):
    """The progress display (see the module docs).  ``clock`` gives "now" for running steps
    (default: the wall clock; replays and tests pass the model's last timestamp)."""

    CSS = """
    Screen { height: auto; }
    Screen:inline {
        height: auto; max-height: 40; border-top: none; border-bottom: none; scrollbar-size-vertical: 0;
    }
    #summary { background: $boost; }
    #panes { margin: 0 0 1 0; }
    """
    BINDINGS: ClassVar[list[Any]] = [("q", "quit", "Hide the display (the build goes on)")]
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        model: ProgressModel,
        *,
        refresh_rate: float = 10.0,
        clock: Clock | None = None,
        title: str = "llblib-async",
    ) -> None:
        super().__init__()
        self.model = model
        self.refresh_rate = refresh_rate
        self.clock: Clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self.title = title
        self.panes: dict[str, RequestPane] = {}
        self._stale = False  # some pane waits to be scrolled to
        self.ready = asyncio.Event()
        self.frames = 0

    def compose(self) -> ComposeResult:
        yield ProgressView(id="summary")
        yield ProgressView(id="panes")  # the screen scrolls: no container to draw each frame
        yield ErrorView(id="errors")

    def on_mount(self) -> None:
        self.repaint(full=True)
        self.set_interval(1 / self.refresh_rate, self.repaint)
        self.ready.set()

    def repaint(self, full: bool = False) -> None:
        """Apply what changed in the model since the last frame."""
        changes = self.model.take_changes()
        running = self._has_running()
        if not changes and not full and not running and not self._stale:
            return
        self.frames += 1
        rebuilt = False
        touched = {label for d in changes.vertices for label in self.model.vertices[d].requests}
        view = self.query_one("#panes", ProgressView)
        screen = self.screen
        # Panes below the screen's last line wait (stale) until it scrolls to them: a busy
        # session has more panes than a terminal has lines, most of them out of sight.
        bottom = screen.scroll_offset.y + screen.size.height - view.virtual_region.y
        y, self._stale = 0, False
        for label in self.model.requests:
            pane = self.panes.get(label)
            if pane is None:
                pane = self.panes[label] = RequestPane(label, self.model, self.clock)
            pane.stale |= full or label in touched
            if y < bottom or full:
                rebuilt |= pane.refresh_from_model(pane.stale)
                pane.stale = False
            self._stale |= pane.stale
            y += len(pane.lines) + 1
        if rebuilt:
            lines: list[Text] = []
            for i, pane in enumerate(self.panes.values()):
                if i:
                    lines.append(_BLANK)
                lines.extend(pane.lines)
            if running:
                # Requests end and start all the time in a busy session: while anything
                # runs the view does not shrink and grows by half its height at a time, as
                # each change of its height lays the screen out again (twice a frame's cost).
                height = len(view.lines)
                if len(lines) > height:
                    height = max(len(lines), height * 3 // 2, _GROW_BY)
                lines.extend([_BLANK] * (height - len(lines)))
            view.show(lines)
        self._summary()
        if self.model.failed():
            self.query_one(ErrorView).show_failures(self.model)

    def _has_running(self) -> bool:
        return bool(self.model.running)

    def _summary(self) -> None:
        done, total = self.model.counts()
        start, now = self.model.start_time(), self.clock()
        elapsed = (now - start).total_seconds() if start and now else 0.0
        n = len(self.model.requests)
        text = Text(" ")  # the line's left padding
        text.append(f"{self.title} ", style="bold")
        text.append(
            f"{done}/{total} steps · {n} request{'s' if n != 1 else ''} · {_seconds(max(elapsed, 0))}"
        )
        failed = len(self.model.failed())
        if failed:
            text.append(f" · {failed} failed", style="bold red")
        self.query_one("#summary", ProgressView).show([text])


class TTYProgress:
    """The Textual display as a :class:`~llblib_async.progress.ProgressSink`; use it with ``async with``::

        async with TTYProgress() as progress:
            async with solver.session(client, progress=progress) as session:
                ...

    ``inline`` (default) draws under the prompt and leaves the last frame there;
    ``inline=False`` takes the whole screen.  ``headless`` runs the app without a
    terminal (tests, benchmarks).  :attr:`model` is the merged progress.  While
    ``llblib_async.terminal.claim_terminal()`` is held the app is suspended (see the
    module docs); :attr:`suspended` says so.
    """

    def __init__(
        self,
        *,
        inline: bool = True,
        headless: bool = False,
        size: tuple[int, int] | None = None,
        refresh_rate: float = 10.0,
        clock: Clock | None = None,
        model: ProgressModel | None = None,
    ) -> None:
        self.model = model or ProgressModel(merge_groups=True)
        self.inline = inline
        self.headless = headless
        self.size = size
        self.refresh_rate = refresh_rate
        self.clock = clock
        self.app: ProgressApp | None = None
        self.suspended = False
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._remove_suspender: Callable[[], None] | None = None

    def update(self, update: StatusUpdate) -> None:
        self.model.apply(update)

    def close(self) -> None:
        """Nothing to do here: the display ends with its ``async with`` block."""

    async def _start(self) -> None:
        app = self.app = ProgressApp(self.model, refresh_rate=self.refresh_rate, clock=self.clock)
        if os.environ.get("NO_COLOR"):
            app.ansi_color = True  # the terminal's own colours only, as Textual's NO_COLOR does
        self._task = asyncio.create_task(
            app.run_async(headless=self.headless, inline=self.inline, inline_no_clear=True, size=self.size)
        )
        ready = asyncio.create_task(app.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._task  # raises what stopped the app

    async def _stop(self) -> None:
        app, task = self.app, self._task
        if app is None or task is None:
            return
        if not task.done():
            app.repaint()
            app.exit()
        await task
        self.app = self._task = None

    @contextlib.asynccontextmanager
    async def suspend(self) -> AsyncIterator[None]:
        """Step aside while something else owns the terminal (a ``claim_terminal`` suspender)."""
        app = self.app
        self.suspended = True
        try:
            driver = app._driver if app is not None else None
            if app is not None and driver is not None and driver.can_suspend and not self.headless:
                with app.suspend():
                    yield
            else:
                await self._stop()
                try:
                    yield
                finally:
                    self.restarts += 1
                    await self._start()
        finally:
            self.suspended = False

    async def __aenter__(self) -> TTYProgress:
        await self._start()
        self._remove_suspender = add_terminal_suspender(self.suspend)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._remove_suspender is not None:
            self._remove_suspender()
            self._remove_suspender = None
        await self._stop()
