"""Build progress: a sans-IO model of BuildKit's Status stream, and displays for it.

* :mod:`.model` -- :class:`StatusUpdate` and its parts, plain values from the daemon's
  ``StatusResponse`` batches, labelled by request;
* :mod:`.state` -- :class:`ProgressModel`, the merged progress of every request of a
  session (shared vertices once, states, sub-progress, bounded logs, warnings);
* :mod:`.sinks` -- the :class:`ProgressSink` protocol every display implements, and
  :class:`NullProgress`, :class:`RecordingProgress`, :func:`fan_out`;
* :mod:`.plain` -- :class:`PlainProgress`, ``buildctl --progress=plain`` for logs and CI;
* :mod:`.rawjson` -- :class:`RawJSONProgress`, ``buildctl --progress=rawjson``;
* :mod:`.select` -- :func:`progress_display`: ``auto``/``tty``/``plain``/``rawjson``/``quiet``
  as buildctl picks them (``BUILDKIT_PROGRESS``, ``NO_COLOR``);
* :mod:`.tui` -- the Textual display (imported on demand: Textual loads only for ``tty``).
"""

from .model import BuildWarning, LogChunk, StatusRow, StatusUpdate, VertexUpdate
from .plain import PlainProgress
from .rawjson import RawJSONProgress
from .select import MODES, open_progress, resolve_mode
from .sinks import NullProgress, ProgressSink, RecordingProgress, fan_out
from .state import (
    Changes,
    LogBuffer,
    LogLine,
    ProgressModel,
    RequestState,
    SubProgress,
    VertexState,
    merge_intervals,
)

__all__ = [
    "MODES",
    "BuildWarning",
    "Changes",
    "LogBuffer",
    "LogChunk",
    "LogLine",
    "NullProgress",
    "PlainProgress",
    "ProgressModel",
    "ProgressSink",
    "RawJSONProgress",
    "RecordingProgress",
    "RequestState",
    "StatusRow",
    "StatusUpdate",
    "SubProgress",
    "VertexState",
    "VertexUpdate",
    "fan_out",
    "merge_intervals",
    "open_progress",
    "resolve_mode",
]
