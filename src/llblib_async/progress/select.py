"""Choosing a progress display as buildctl does: :func:`open_progress`, :func:`resolve_mode`.

``--progress`` of buildctl takes ``auto``, ``tty``, ``plain``, ``rawjson`` or ``quiet``;
with no choice ``$BUILDKIT_PROGRESS`` decides, else ``auto``: ``tty`` when the output is
a terminal, ``plain`` otherwise.  ``tty`` on something that is not a terminal is an
error (:class:`~llblib_async.errors.ProgressModeError`), as in buildctl.  ``NO_COLOR``
(any non-empty value) turns colours off in the tty display, as Go's ``progressui`` does;
plain and rawjson have none.

Deviation from buildctl: the tty display is the Textual app of :mod:`.tui` (inline by
default, ``tty-fullscreen`` takes the whole screen), loaded only when chosen.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TextIO

from ..errors import ProgressModeError
from .plain import PlainProgress
from .rawjson import RawJSONProgress
from .sinks import NullProgress, ProgressSink

__all__ = ["MODES", "open_progress", "resolve_mode"]

#: The modes :func:`open_progress` takes (``tty-fullscreen`` is ours; the rest are buildctl's).
MODES = ("auto", "tty", "tty-fullscreen", "plain", "rawjson", "quiet")


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def resolve_mode(
    mode: str | None = None, *, out: TextIO | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The concrete mode (``tty``, ``tty-fullscreen``, ``plain``, ``rawjson`` or ``quiet``).

    ``mode`` wins, then ``$BUILDKIT_PROGRESS``, then ``auto``.  Raises
    :class:`~llblib_async.errors.ProgressModeError` for an unknown mode or for ``tty``
    when ``out`` (default ``sys.stderr``) is not a terminal.
    """
    environ = os.environ if env is None else env
    stream = out if out is not None else sys.stderr
    chosen = (mode or environ.get("BUILDKIT_PROGRESS") or "auto").strip().lower()
    if chosen not in MODES:
        raise ProgressModeError(chosen, f"not one of {', '.join(MODES)}")
    if chosen == "auto":
        return "tty" if _isatty(stream) else "plain"
    if chosen.startswith("tty") and not _isatty(stream):
        raise ProgressModeError(chosen, "the output is not a terminal (use plain, rawjson or quiet)")
    return chosen


@contextlib.asynccontextmanager
async def open_progress(
    mode: str | None = None, *, out: TextIO | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[ProgressSink]:
    """The display for ``mode`` (see :func:`resolve_mode`), open for the ``async with`` body::

        async with open_progress("auto") as progress:
            async with solver.session(client, progress=progress) as session:
                ...

    Plain and rawjson write to ``out`` (default ``sys.stderr``, where buildctl writes).
    """
    chosen = resolve_mode(mode, out=out, env=env)
    stream = out if out is not None else sys.stderr
    sink: ProgressSink
    if chosen.startswith("tty"):
        from .tui import TTYProgress

        async with TTYProgress(inline=chosen == "tty") as tty:
            yield tty
        return
    if chosen == "plain":
        sink = PlainProgress(stream)
    elif chosen == "rawjson":
        sink = RawJSONProgress(stream)
    else:
        sink = NullProgress()
    try:
        yield sink
    finally:
        sink.close()
