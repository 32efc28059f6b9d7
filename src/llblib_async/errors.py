"""The exceptions llblib-async raises, all in one place.

Every error the library raises derives from :class:`BuildKitError`, so ``except
llblib_async.BuildKitError`` catches them all; the subclasses say what went wrong
and carry the offending value as an attribute. Each is importable from
``llblib_async``; the errors about building a graph (a bad image reference, git URL,
definition...) live with the graph builder and are importable from
``llblib_async.llb``. The README has the table of all of them.

Some also derive from the built-in exception a Python user would try first
(``ValueError`` for bad input, ``ConnectionError`` for an unreachable daemon,
``FileNotFoundError`` for a missing local directory), so generic handlers keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpclib.const import Status

from .process_result import ProcessResult

if TYPE_CHECKING:
    from ._pb import pb


class BuildKitError(Exception):
    """Base class of every llblib-async error."""


class AddressError(BuildKitError, ValueError):
    """A daemon address is malformed or uses an unsupported scheme."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"bad BuildKit address {address!r}: {reason}")
        self.address = address
        self.reason = reason


class DaemonUnreachableError(BuildKitError, ConnectionError):
    """No daemon answered at the address(es) tried."""

    def __init__(self, address: str, reason: str, tried: Sequence[str] = ()) -> None:
        tried = list(tried) or [address]
        msg = f"cannot reach BuildKit at {address!r}: {reason}"
        if len(tried) > 1:
            msg += " (tried: " + ", ".join(tried) + ")"
        super().__init__(msg)
        self.address = address
        self.reason = reason
        self.tried = tried


class UpgradeRefusedError(DaemonUnreachableError):
    """The Docker daemon answered an HTTP upgrade (``POST /grpc``, ``POST /session``) with
    HTTP ``status`` instead of ``101 Switching Protocols``."""

    def __init__(self, address: str, reason: str, status: int) -> None:
        super().__init__(address, reason)
        self.status = status


class DaemonError(BuildKitError):
    """The daemon answered a call with an error (gRPC status other than OK)."""

    def __init__(self, method: str, status: str, message: str) -> None:
        super().__init__(f"{method}: {status}: {message}")
        self.method = method
        self.status = status
        self.message = message


class ConnectionLostError(BuildKitError, ConnectionError):
    """The connection to the daemon broke while a call or build was in flight."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"lost connection to BuildKit at {address!r}: {reason}")
        self.address = address
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A place in a source file (a Dockerfile) an op or an error comes from (``pb.Source``).

    ``filename`` and ``data`` are the file's name and bytes, ``language`` e.g.
    ``"Dockerfile"``; ``ranges`` are ``(start_line, start_char, end_line, end_char)``
    with lines counted from 1. :meth:`snippet` renders the lines like ``docker build``.
    """

    filename: str
    data: bytes
    language: str
    ranges: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def from_pb(cls, info: pb.SourceInfo, ranges: Iterable[pb.Range]) -> SourceLocation:
        """A ``pb.SourceInfo`` with its ranges (an op's source map entry, a warning's)."""
        return cls(
            info.filename,
            bytes(info.data),
            info.language,
            tuple(
                (
                    r.start.line if r.start else 0,
                    r.start.character if r.start else 0,
                    r.end.line if r.end else 0,
                    r.end.character if r.end else 0,
                )
                for r in ranges
            ),
        )

    @property
    def line(self) -> int:
        """The first line of the first range (0 when there is none)."""
        return self.ranges[0][0] if self.ranges else 0

    def snippet(self, context: int = 2) -> str:
        """``Dockerfile:3`` and the lines around the ranges, the ranges marked ``>>>``."""
        lines = self.data.decode(errors="replace").splitlines()
        marked: set[int] = set()
        for start, _, end, _ in self.ranges:
            marked.update(range(start, max(start, end) + 1))
        if not marked or not lines:
            return f"{self.filename}:{self.line}" if self.line else self.filename
        first = max(1, min(marked) - context)
        last = min(len(lines), max(marked) + context)
        width = len(str(last))
        where = f"{min(marked)}" if min(marked) == max(marked) else f"{min(marked)}-{max(marked)}"
        out = [f"{self.filename}:{where}", "-" * 20]
        for number in range(first, last + 1):
            mark = ">>>" if number in marked else "   "
            out.append(f" {number:>{width}} | {mark} {lines[number - 1]}".rstrip())
        out.append("-" * 20)
        return "\n".join(out)


class SolveError(BuildKitError):
    """A build failed in the daemon.

    ``vertex`` is the digest of the failing LLB vertex when the daemon named one,
    ``exit_code`` the exit code of a failed exec, ``logs`` the tail of its output.
    ``sources`` are the places in the source (a Dockerfile's lines) the failing step
    or the frontend's error points at; ``str()`` shows them as ``docker build`` does.
    ``frontend`` names the frontend that failed (``dockerfile.v0``), ``stack`` holds
    the daemon's Go stack frames (``function (file:line)``), for bug reports.
    ``debug`` holds what the request's ``on_error=`` commands gave (one
    :class:`~llblib_async.ProcessResult` per command, run in the failed step's
    container); it is empty without ``on_error`` or when the failed op was no exec.
    """

    debug: tuple[ProcessResult, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        vertex: str | None = None,
        vertex_name: str | None = None,
        exit_code: int | None = None,
        logs: str = "",
        sources: Sequence[SourceLocation] = (),
        frontend: str | None = None,
        stack: Sequence[str] = (),
    ) -> None:
        text = message
        if vertex_name and not message.startswith(vertex_name):
            text = f"{vertex_name}: {message}"
        for place in sources:
            text += "\n" + place.snippet()
        if logs:
            text += "\n" + logs
        super().__init__(text)
        self.message = message
        self.vertex = vertex
        self.vertex_name = vertex_name
        self.exit_code = exit_code
        self.logs = logs
        self.sources = tuple(sources)
        self.frontend = frontend
        self.stack = tuple(stack)


class ContainerExitError(BuildKitError):
    """A process in a container on the build worker exited with a non-zero status.

    ``exit_code`` is its status, ``command`` its command line, ``result`` the whole
    :class:`~llblib_async.ProcessResult` (captured output included); the message
    ends with the tail of its output.
    """

    def __init__(self, result: ProcessResult) -> None:
        text = f"process {list(result.args)!r} exited with code {result.exit_code}"
        if result.error and not result.error.startswith("exit code:"):
            text += f" ({result.error})"
        tail = result.output_tail()
        if tail:
            text += "\n" + tail
        super().__init__(text)
        self.result = result
        self.exit_code = result.exit_code
        self.command = result.args

    @property
    def output(self) -> str:
        """The tail of the process's captured output."""
        return self.result.output_tail()


class ContainerError(BuildKitError, ValueError):
    """A container option is unusable (``option`` names it, ``value`` is what was given)."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        super().__init__(f"container option {option}={value!r}: {reason}")
        self.option = option
        self.value = value
        self.reason = reason


class UploadError(SolveError):
    """A build failed because sending a local directory failed on the client side
    (a file vanished or changed between listing and sending, or could not be read).

    ``local`` is the ``local://`` name; ``reason`` says which file and what happened.
    The daemon itself often reports such a failure only as ``unexpected EOF``.
    """

    def __init__(self, local: str, reason: str) -> None:
        super().__init__(f"sending local {local!r} failed: {reason}")
        self.local = local
        self.reason = reason


class LocalDirError(BuildKitError, FileNotFoundError):
    """A local directory given as a build context does not exist or is not a directory."""

    def __init__(self, name: str, path: str, reason: str) -> None:
        super().__init__(f"local context {name!r} at {path!r}: {reason}")
        self.name = name
        self.path = path
        self.reason = reason


class PatternError(BuildKitError, ValueError):
    """Include/exclude patterns of a local directory (``.dockerignore`` syntax) are malformed.

    ``patterns`` are the patterns given; the message names the list, as fsutil's does.
    """

    def __init__(self, message: str, patterns: Sequence[str]) -> None:
        super().__init__(message)
        self.patterns = list(patterns)


class DockerfileError(BuildKitError, ValueError):
    """An argument of ``llb.dockerfile`` is unusable; the message names it and says why."""


class FrontendQueryError(BuildKitError):
    """The frontend's answer to a query could not be read (``metadata`` holds what it sent)."""

    def __init__(self, query: str, message: str, metadata: Mapping[str, bytes]) -> None:
        super().__init__(f"{query}: {message}")
        self.query = query
        self.metadata = dict(metadata)


class SessionClosedError(BuildKitError, RuntimeError):
    """The session was closed (its ``async with`` block left) before or while a request ran."""


class LateAttachableError(BuildKitError, RuntimeError):
    """An attachable was added to a :class:`~llblib_async.Solver` while a session of it was open.

    The daemon learns a session's services from the method list announced when the
    session opens, and every request of the session names that one session, so an
    open session can never serve a new attachable; the solver raises instead of
    accepting something that would silently never be called. ``attachable`` is the
    object that was refused.
    """

    def __init__(self, attachable: object) -> None:
        super().__init__(
            f"cannot add attachable {attachable!r}: a session of this solver is open, and the"
            " daemon learns a session's services only when it opens; add it before"
            " solver.session(...) (or open a new session after this one closed)"
        )
        self.attachable = attachable


class ExportError(BuildKitError):
    """Exported output could not be written on the client side."""


class UnsupportedExporterError(ExportError):
    """The daemon has no such exporter (e.g. ``image`` on a graphdriver Docker daemon)."""

    def __init__(self, exporter: str, reason: str) -> None:
        super().__init__(f"exporter {exporter!r} is not supported by this daemon: {reason}")
        self.exporter = exporter
        self.reason = reason


class SecretError(BuildKitError, ValueError):
    """A secret could not be provided (missing source, too big...); never holds the value.

    ``status`` is the gRPC status the daemon gets when it asked for the secret.
    """

    def __init__(self, message: str, *, status: Status = Status.FAILED_PRECONDITION) -> None:
        super().__init__(message)
        self.status = status


class AuthConfigError(BuildKitError):
    """The Docker config file or a credential helper gave unusable data."""


class TokenFetchError(BuildKitError):
    """Fetching a registry token from the registry's token server (its realm) failed.

    ``host`` is the registry, ``realm`` the token server URL, ``status`` the HTTP status
    of the last answer (0 when there was none).  The daemon gets the message, so the
    build's error names the registry.
    """

    def __init__(self, host: str, realm: str, message: str, *, status: int = 0) -> None:
        super().__init__(f"failed to fetch token for {host} from {realm}: {message}")
        self.host = host
        self.realm = realm
        self.status = status


class RegistryError(BuildKitError):
    """A registry request of the client (resolving an image's config) failed; ``status`` is
    the HTTP status (0 when there was no response)."""

    def __init__(self, ref: str, message: str, *, status: int = 0) -> None:
        super().__init__(f"{ref}: {message}")
        self.ref = ref
        self.status = status


class ProgressModeError(BuildKitError, ValueError):
    """A progress display mode is unknown, or ``tty`` was asked for without a terminal.

    ``mode`` is the mode given (from the argument or ``$BUILDKIT_PROGRESS``).
    """

    def __init__(self, mode: str, reason: str) -> None:
        super().__init__(f"progress mode {mode!r}: {reason}")
        self.mode = mode
        self.reason = reason


class BaseImageError(BuildKitError):
    """The config of a State's base image (``llb.image(ref)``) could not be resolved for an
    image export; ``ref`` is the base's reference, ``reason`` why (the resolver's error is
    the ``__cause__``). Nothing was exported: the build was cancelled. Pass
    ``inherit_config=False`` to ``llb.image`` to export without the base's config."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"cannot resolve the config of base image {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason
