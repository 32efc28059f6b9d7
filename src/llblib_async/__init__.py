"""llblib-async: an asyncio-native Python SDK for BuildKit.

Build LLB graphs with :mod:`llblib_async.llb`, connect with :func:`connect`, and
solve them on a real buildkitd::

    async with llblib_async.connect() as client:
        await client.solve(state, exports=[llblib_async.LocalExport("out")])
"""

from . import llb
from .attachables import ForwardedSocket, Secret, SecretError, Secrets, SocketForwards, SSHAgent
from .auth import AuthConfigError, DockerAuthProvider, TokenFetchError
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
    UploadError,
)
from .exporters import (
    CacheExport,
    CacheImport,
    DockerExport,
    ImageExport,
    LocalExport,
    MobyExport,
    OCIExport,
    OCILayoutExport,
    TarExport,
    UnsupportedExporterError,
)
from .progress import (
    NullProgress,
    PlainProgress,
    ProgressSink,
    RecordingProgress,
    StatusUpdate,
)
from .request import FileStat, Request, Result
from .session import RESPONSE_IMAGE_CONFIG_KEY, Session, SessionClosedError
from .solve import SolveResult
from .solver import Solver
from .types import BuildkitInfo, UsageRecord, Worker

__version__ = "0.1.0.dev0"

__all__ = [
    "RESPONSE_IMAGE_CONFIG_KEY",
    "AddressError",
    "AuthConfigError",
    "BuildKitError",
    "BuildkitInfo",
    "CacheExport",
    "CacheImport",
    "Client",
    "ConnectionLostError",
    "DaemonError",
    "DaemonUnreachableError",
    "DockerAuthProvider",
    "DockerExport",
    "ExportError",
    "FileStat",
    "ForwardedSocket",
    "ImageExport",
    "LocalDirError",
    "LocalExport",
    "MobyExport",
    "NullProgress",
    "OCIExport",
    "OCILayoutExport",
    "PlainProgress",
    "PrerequisiteError",
    "ProgressSink",
    "RecordingProgress",
    "Request",
    "Result",
    "SSHAgent",
    "Secret",
    "SecretError",
    "Secrets",
    "Session",
    "SessionClosedError",
    "SocketForwards",
    "SolveError",
    "SolveResult",
    "Solver",
    "StatusUpdate",
    "TLSConfig",
    "TarExport",
    "TokenFetchError",
    "UnsupportedExporterError",
    "UploadError",
    "UsageRecord",
    "Worker",
    "connect",
    "llb",
]
