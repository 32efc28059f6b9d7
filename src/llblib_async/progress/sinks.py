"""Where progress goes: the :class:`ProgressSink` protocol and the sinks that print nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .model import StatusUpdate, VertexUpdate

__all__ = ["NullProgress", "ProgressSink", "RecordingProgress", "fan_out"]


class ProgressSink(Protocol):
    """Consumes progress.  ``update`` must not block: it runs on the event loop."""

    def update(self, update: StatusUpdate) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Discards progress."""

    def update(self, update: StatusUpdate) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingProgress:
    """Keeps every update; handy in tests and for post-mortem printing."""

    def __init__(self) -> None:
        self.updates: list[StatusUpdate] = []

    def update(self, update: StatusUpdate) -> None:
        self.updates.append(update)

    def close(self) -> None:
        pass

    @property
    def vertices(self) -> dict[str, VertexUpdate]:
        """The latest state of every vertex seen, by digest."""
        merged: dict[str, VertexUpdate] = {}
        for u in self.updates:
            for v in u.vertices:
                merged[v.digest] = v
        return merged

    def logs(self, vertex: str | None = None) -> bytes:
        return b"".join(c.data for u in self.updates for c in u.logs if vertex in (None, c.vertex))


def fan_out(sinks: Sequence[ProgressSink]) -> ProgressSink:
    """One sink feeding several (e.g. a printer and a recorder)."""

    class _FanOut:
        def update(self, update: StatusUpdate) -> None:
            for s in sinks:
                s.update(update)

        def close(self) -> None:
            for s in sinks:
                s.close()

    return _FanOut()
