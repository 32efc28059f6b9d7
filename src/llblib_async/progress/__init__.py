"""Build progress: a sans-IO model of BuildKit's Status stream, and displays for it.

* :mod:`.model` -- :class:`StatusUpdate` and its parts, plain values from the daemon's
  ``StatusResponse`` batches, labelled by request;
* :mod:`.sinks` -- the :class:`ProgressSink` protocol every display implements, and
  :class:`NullProgress`, :class:`RecordingProgress`, :func:`fan_out`;
* :mod:`.plain` -- :class:`PlainProgress`, ``buildctl --progress=plain`` for logs and CI.

Every request of a session feeds the session's one sink; a Textual TUI will be another
sink here.
"""

from .model import BuildWarning, LogChunk, StatusRow, StatusUpdate, VertexUpdate
from .plain import PlainProgress
from .sinks import NullProgress, ProgressSink, RecordingProgress, fan_out

__all__ = [
    "BuildWarning",
    "LogChunk",
    "NullProgress",
    "PlainProgress",
    "ProgressSink",
    "RecordingProgress",
    "StatusRow",
    "StatusUpdate",
    "VertexUpdate",
    "fan_out",
]
