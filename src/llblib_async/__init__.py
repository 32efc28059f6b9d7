"""llblib-async: an asyncio-native Python SDK for BuildKit.

Build LLB graphs with :mod:`llblib_async.llb`, connect with :func:`connect`, and
solve them on a real buildkitd::

    async with llblib_async.connect() as client:
        await client.solve(state, exports=[llblib_async.LocalExport("out")])
"""

from . import llb
from .client import Client, TLSConfig, connect
from .errors import (
    AddressError,
    BuildKitError,
    ConnectionLostError,
    DaemonError,
    DaemonUnreachableError,
    ExportError,
    LocalDirError,
    PrerequisiteError,
    SolveError,
)
from .exporters import LocalExport, TarExport
from .progress import (
    NullProgress,
    PlainProgress,
    ProgressSink,
    RecordingProgress,
    StatusUpdate,
)
from .solve import SolveResult
from .types import BuildkitInfo, UsageRecord, Worker

__version__ = "0.1.0.dev0"

__all__ = [
    "AddressError",
    "BuildKitError",
    "BuildkitInfo",
    "Client",
    "ConnectionLostError",
    "DaemonError",
    "DaemonUnreachableError",
    "ExportError",
    "LocalDirError",
    "LocalExport",
    "NullProgress",
    "PlainProgress",
    "PrerequisiteError",
    "ProgressSink",
    "RecordingProgress",
    "SolveError",
    "SolveResult",
    "StatusUpdate",
    "TLSConfig",
    "TarExport",
    "UsageRecord",
    "Worker",
    "connect",
    "llb",
]
