"""Why a request failed, told as well as the client can tell it.

The daemon reports a failed build as a bare gRPC error; the client knows more:

* :class:`FailureLog` follows the request's progress and keeps vertex names and the
  tail of each vertex's output, so a :class:`~llblib_async.errors.SolveError` names the
  failing step and shows the end of its log;
* :func:`unsupported_exporter` turns the daemon's "exporter not found" into
  :class:`~llblib_async.errors.UnsupportedExporterError`;
* :func:`upload_failure` finds a failure of *our* side of a local-directory transfer
  (a file vanished or changed while it was sent), which the daemon tends to report
  only as ``unexpected EOF``, and makes it an :class:`~llblib_async.errors.UploadError`.

:func:`explain` applies them in that order of precedence.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from ..attachables.filesync import FileSyncProvider
from ..errors import BuildKitError, SolveError, UnsupportedExporterError, UploadError
from ..exporters import Export
from ..progress import StatusUpdate

__all__ = ["LOG_TAIL_BYTES", "FailureLog", "explain", "unsupported_exporter", "upload_failure"]

# Output kept per vertex so a failure can show the end of the failing step's log.
LOG_TAIL_BYTES = 4096


class FailureLog:
    """Remembers vertex names and log tails to explain a failure in the exception."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.logs: dict[str, collections.deque[bytes]] = {}
        self._sizes: dict[str, int] = {}

    def observe(self, update: StatusUpdate) -> None:
        for v in update.vertices:
            self.names[v.digest] = v.name
            if v.error:
                self.errors[v.digest] = v.error
        for chunk in update.logs:
            tail = self.logs.setdefault(chunk.vertex, collections.deque())
            tail.append(chunk.data)
            self._sizes[chunk.vertex] = self._sizes.get(chunk.vertex, 0) + len(chunk.data)
            while self._sizes[chunk.vertex] > LOG_TAIL_BYTES and len(tail) > 1:
                self._sizes[chunk.vertex] -= len(tail.popleft())

    def enrich(self, err: BuildKitError) -> BuildKitError:
        if not isinstance(err, SolveError):
            return err
        vertex = err.vertex or next(iter(self.errors), None)
        if vertex is None:
            return err
        logs = b"".join(self.logs.get(vertex, ())).decode(errors="replace")[-LOG_TAIL_BYTES:]
        enriched = SolveError(
            err.message,
            vertex=vertex,
            vertex_name=self.names.get(vertex),
            exit_code=err.exit_code,
            logs=logs.rstrip("\n"),
            sources=err.sources,
            frontend=err.frontend,
            stack=err.stack,
        )
        enriched.__cause__ = err.__cause__
        enriched.debug = err.debug
        for note in getattr(err, "__notes__", ()):
            enriched.add_note(note)
        return enriched


def upload_failure(filesync: FileSyncProvider, names: Iterable[str], since: int) -> UploadError | None:
    """The first failure of *our* side of a transfer of one of ``names`` (transfers
    ``since`` on), which the daemon tends to report only as ``unexpected EOF``."""
    wanted = set(names)
    for t in filesync.transfers[since:]:
        if t.error and t.name in wanted:
            return UploadError(t.name, t.error)
    return None


def unsupported_exporter(err: BuildKitError, exports: Sequence[Export]) -> UnsupportedExporterError | None:
    """Map the daemon's "exporter not found" failure to a typed error."""
    text = str(err)
    for e in exports:
        if f'exporter "{e.type}" could not be found' in text or f"exporter {e.type!r} not found" in text:
            return UnsupportedExporterError(e.type, text)
    return None


def explain(
    err: BuildKitError,
    *,
    exports: Sequence[Export],
    filesync: FileSyncProvider,
    locals: Iterable[str],
    uploads_before: int,
    log: FailureLog,
) -> BuildKitError:
    """The most telling error for a request that failed with ``err``; raise it as it is."""
    mapped = unsupported_exporter(err, exports) or upload_failure(filesync, locals, uploads_before)
    if mapped is not None:
        mapped.__cause__ = err
        return mapped
    return log.enrich(err)
