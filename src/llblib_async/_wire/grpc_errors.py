"""Decoding BuildKit's gRPC error details and mapping gRPC failures to llblib-async errors.

BuildKit puts rich error information into the ``grpc-status-details-bin`` trailer: a
``google.rpc.Status`` whose ``details`` are ``Any`` messages, but -- unlike ordinary gRPC
services -- most ``Any.value`` payloads are **JSON** (Go ``encoding/json`` of the Go struct),
marked by a ``+json`` suffix on the type URL (spec §1.5)::

    github.com/moby/buildkit/errdefs.Vertex+json           {"digest": "sha256:..."}
    github.com/moby/buildkit/gatewayapi.ExitMessage+json   {"Code": 42}
    github.com/moby/buildkit/errdefs.Source+json           {"info": {...}, "ranges": [...]}
    github.com/moby/buildkit/errdefs.Solve+json            {"inputIDs": [...], "mountIDs": [...], "op": {...}}
    github.com/moby/buildkit/stack.Stack+json              daemon Go stack traces

grpclib only decodes details with the ``protobuf`` runtime, which we do not depend on, so
:class:`BuildKitStatusDetailsCodec` does it with the generated betterproto2
``google.rpc.Status``.  Every channel the library creates passes it as
``status_details_codec``; ``GRPCError.details`` is then a ``list[ErrorDetail]``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import h2.exceptions
from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from .._pb.google import protobuf as pb_protobuf
from .._pb.google import rpc as pb_rpc
from ..errors import BuildKitError, ConnectionLostError, DaemonError, SolveError, SourceLocation

__all__ = [
    "TYPE_EXIT_MESSAGE",
    "TYPE_FRONTEND",
    "TYPE_SOLVE",
    "TYPE_SOURCE",
    "TYPE_STACK",
    "TYPE_VERTEX",
    "BuildKitStatusDetailsCodec",
    "ErrorDetail",
    "error_details",
    "exit_code_of",
    "frontend_of",
    "sources_of",
    "stack_of",
    "translate_grpc_error",
    "translating_errors",
    "vertex_of",
]

TYPE_VERTEX = "github.com/moby/buildkit/errdefs.Vertex+json"
TYPE_EXIT_MESSAGE = "github.com/moby/buildkit/gatewayapi.ExitMessage+json"
TYPE_SOURCE = "github.com/moby/buildkit/errdefs.Source+json"
TYPE_SOLVE = "github.com/moby/buildkit/errdefs.Solve+json"
TYPE_STACK = "github.com/moby/buildkit/stack.Stack+json"
TYPE_FRONTEND = "github.com/moby/buildkit/errdefs.Frontend+json"


@dataclass(frozen=True)
class ErrorDetail:
    """One ``google.rpc.Status`` detail.

    ``value`` is the decoded JSON for ``+json`` type URLs, else (or when the JSON is broken)
    the raw ``Any.value`` bytes.
    """

    type_url: str
    value: Any


class BuildKitStatusDetailsCodec(StatusDetailsCodecBase):
    """grpclib status-details codec for BuildKit's JSON-valued ``google.rpc.Status`` details."""

    def encode(self, status: Status, message: str | None, details: Any) -> bytes:
        # Used when *we* are the gRPC server (the session attachables) and by tests.
        anys = []
        for d in details or ():
            if not isinstance(d, ErrorDetail):
                raise TypeError(f"details must be ErrorDetail, not {type(d).__name__}")
            value = d.value if isinstance(d.value, bytes) else json.dumps(d.value).encode()
            anys.append(pb_protobuf.Any(type_url=d.type_url, value=value))
        return bytes(pb_rpc.Status(code=status.value, message=message or "", details=anys))

    def decode(self, status: Status, message: str | None, data: bytes) -> list[ErrorDetail]:
        # grpclib calls this while building the GRPCError for a failed call; raising here
        # would replace the daemon's error with a codec traceback, so never raise.
        try:
            st = pb_rpc.Status.parse(data)
        except Exception:
            return [ErrorDetail("", data)]
        out: list[ErrorDetail] = []
        for a in st.details:
            value: Any = bytes(a.value)
            if a.type_url.endswith("+json"):
                with suppress(ValueError):  # not JSON after all: keep the bytes
                    value = json.loads(value)
            out.append(ErrorDetail(a.type_url, value))
        return out


def error_details(err: BaseException) -> list[ErrorDetail]:
    """The decoded details of a ``GRPCError`` (empty for anything else or foreign codecs)."""
    details = getattr(err, "details", None) if isinstance(err, GRPCError) else None
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, ErrorDetail)]


def _first(details: Sequence[ErrorDetail], type_url: str) -> dict[str, Any] | None:
    for d in details:
        if d.type_url == type_url and isinstance(d.value, dict):
            return d.value
    return None


def vertex_of(details: Sequence[ErrorDetail]) -> str | None:
    """Digest of the failing LLB vertex (``errdefs.Vertex``), if the daemon named one."""
    v = _first(details, TYPE_VERTEX)
    digest = v.get("digest") if v else None
    return digest if isinstance(digest, str) and digest else None


def exit_code_of(details: Sequence[ErrorDetail]) -> int | None:
    """Exit code of the failed exec (``gatewayapi.ExitMessage``), if any."""
    v = _first(details, TYPE_EXIT_MESSAGE)
    code = v.get("Code") if v else None
    # bool is an int subclass; a JSON true/false is not an exit code.
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _position(value: Any) -> tuple[int, int]:
    if not isinstance(value, dict):
        return 0, 0
    line, char = value.get("line", 0), value.get("character", 0)
    return (line if isinstance(line, int) else 0), (char if isinstance(char, int) else 0)


def sources_of(details: Sequence[ErrorDetail]) -> list[SourceLocation]:
    """The source ranges (``errdefs.Source``: a Dockerfile's lines) the error points at.

    Go's JSON has the file's bytes base64-encoded; malformed entries are skipped.
    """
    out: list[SourceLocation] = []
    for d in details:
        if d.type_url != TYPE_SOURCE or not isinstance(d.value, dict):
            continue
        info = d.value.get("info")
        if not isinstance(info, dict):
            continue
        try:
            data = base64.b64decode(info.get("data") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            data = b""
        ranges = []
        for r in d.value.get("ranges") or ():
            if isinstance(r, dict):
                ranges.append((*_position(r.get("start")), *_position(r.get("end"))))
        filename = info.get("filename")
        language = info.get("language")
        out.append(
            SourceLocation(
                filename=filename if isinstance(filename, str) else "",
                data=data,
                language=language if isinstance(language, str) else "",
                ranges=tuple(ranges),
            )
        )
    return out


def frontend_of(details: Sequence[ErrorDetail]) -> str | None:
    """The name of the frontend whose error this is (``errdefs.Frontend``), if any."""
    v = _first(details, TYPE_FRONTEND)
    name = v.get("name") if v else None
    return name if isinstance(name, str) and name else None


def stack_of(details: Sequence[ErrorDetail]) -> list[str]:
    """The daemon's Go stack frames (``stack.Stack``) as ``function (file:line)``."""
    frames: list[str] = []
    for d in details:
        if d.type_url != TYPE_STACK or not isinstance(d.value, dict):
            continue
        for f in d.value.get("frames") or ():
            if isinstance(f, dict):
                frames.append(f"{f.get('Name', '?')} ({f.get('File', '?')}:{f.get('Line', 0)})")
    return frames


_EXIT_CODE_RE = re.compile(r"exit code: (-?[0-9]+)$")


def _short_method(method: str) -> str:
    """``"/moby.buildkit.v1.Control/Solve"``, ``"LLBBridge.Solve"``, ``"Solve"`` -> ``"Solve"``."""
    return method.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def translate_grpc_error(err: BaseException, *, method: str, address: str) -> BuildKitError:
    """Map a failure of one RPC to a typed llblib-async error (the caller raises it ``from err``).

    * ``GRPCError`` whose details name a vertex or an exit code, or an ``UNKNOWN`` error of a
      ``Solve`` call (``method`` ``"Solve"``, ``".../Control/Solve"``, ``"LLBBridge.Solve"``)
      -> :class:`SolveError` (``vertex``, ``exit_code``; ``message`` is the daemon's);
    * any other ``GRPCError`` -> :class:`DaemonError` (``status`` is the grpc code's name);
    * stream reset (``StreamTerminatedError``), socket errors, HTTP/2 protocol errors ->
      :class:`ConnectionLostError`;
    * grpclib's own deadline (``asyncio.TimeoutError``) -> ``DaemonError(.., "DEADLINE_EXCEEDED", ..)``.
    """
    if isinstance(err, BuildKitError):
        return err
    if isinstance(err, GRPCError):
        details = error_details(err)
        message = err.message or ""
        vertex = vertex_of(details)
        exit_code = exit_code_of(details)
        is_solve = _short_method(method) == "Solve"
        if exit_code is None and is_solve:
            # Daemons without ExitMessage details (Docker 20.10's BuildKit v0.8) only say
            # "executor failed running [...]: exit code: N"; newer ones add the detail too.
            m = _EXIT_CODE_RE.search(message)
            exit_code = int(m.group(1)) if m else None
        # A failed build is reported as UNKNOWN (Go's generic code) with, on current
        # daemons, the failing vertex attached; other codes (CANCELLED, UNAVAILABLE, ...)
        # are about the call, not the build.
        failed_build = vertex is not None or exit_code is not None or frontend_of(details) is not None
        if failed_build or (is_solve and err.status is Status.UNKNOWN):
            return SolveError(
                message or err.status.name,
                vertex=vertex,
                exit_code=exit_code,
                sources=sources_of(details),
                frontend=frontend_of(details),
                stack=stack_of(details),
            )
        return DaemonError(method, err.status.name, message)
    if isinstance(err, StreamTerminatedError):
        return ConnectionLostError(address, f"{method}: stream terminated: {err or 'reset by peer'}")
    # TimeoutError is an OSError subclass: test it first.
    if isinstance(err, asyncio.TimeoutError):
        return DaemonError(method, Status.DEADLINE_EXCEEDED.name, "deadline exceeded")
    if isinstance(err, OSError | ProtocolError | h2.exceptions.ProtocolError):
        reason = str(err) or type(err).__name__
        return ConnectionLostError(address, f"{method}: {reason}")
    return DaemonError(method, Status.UNKNOWN.name, f"{type(err).__name__}: {err}")


# What translating_errors() converts; everything else (cancellation, our own errors,
# programming errors) passes through untouched.
TRANSLATED_ERRORS = (
    GRPCError,
    StreamTerminatedError,
    OSError,
    ProtocolError,
    h2.exceptions.ProtocolError,
)


@contextmanager
def translating_errors(method: str, address: str) -> Iterator[None]:
    """``with translating_errors("Solve", addr): await stub.solve(...)`` raises typed errors.

    The original exception stays reachable as ``__cause__`` (e.g. for its ``details``).
    """
    try:
        yield
    except BuildKitError:
        raise
    except TRANSLATED_ERRORS as err:
        raise translate_grpc_error(err, method=method, address=address) from err
