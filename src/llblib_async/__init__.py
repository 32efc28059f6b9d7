"""llblib-async: an asyncio-native Python SDK for BuildKit.

Build LLB graphs with :mod:`llblib_async.llb`, connect with :func:`connect`, and
solve them on a real buildkitd::

    async with llblib_async.connect() as client:
        await client.solve(state, exports=[llblib_async.LocalExport("out")])

Everything a user needs is importable from here; ``docs/architecture.md`` shows
where each part lives.
"""

from . import llb
from .attachables import (
    Attachable,
    DockerAuthProvider,
    ForwardedSocket,
    Secret,
    Secrets,
    SocketForwards,
    SSHAgent,
)
from .cache import CacheExport, CacheImport
from .client import Client, TLSConfig, connect
from .daemon_info import BuildkitInfo, UsageRecord, Worker
from .errors import (
    AddressError,
    AuthConfigError,
    BaseImageError,
    BuildKitError,
    ConnectionLostError,
    ContainerError,
    ContainerExitError,
    DaemonError,
    DaemonUnreachableError,
    DockerfileError,
    ExportError,
    FrontendQueryError,
    LateAttachableError,
    LocalDirError,
    PatternError,
    ProgressModeError,
    RegistryError,
    SecretError,
    SessionClosedError,
    SolveError,
    SourceLocation,
    TokenFetchError,
    UnsupportedExporterError,
    UpgradeRefusedError,
    UploadError,
)
from .exporters import (
    DockerExport,
    ImageExport,
    LocalExport,
    MobyExport,
    OCIExport,
    OCILayoutExport,
    TarExport,
)
from .frontend_queries import (
    BuildArg,
    LintReport,
    LintWarning,
    Outline,
    OutlineItem,
    Target,
    lint,
    outline,
    targets,
)
from .gateway import Container, ContainerOptions, FileStat, OnError, Process, Result
from .gateway_resolver import GatewayResolver
from .process_result import ProcessResult
from .progress import (
    NullProgress,
    PlainProgress,
    ProgressModel,
    ProgressSink,
    RawJSONProgress,
    RecordingProgress,
    StatusUpdate,
    fan_out,
    open_progress,
)
from .request import (
    RESPONSE_IMAGE_CONFIG_KEY,
    Descriptor,
    Request,
    RequestOptions,
    ResultHandler,
    SolveResult,
)
from .session import Session
from .solver import Solver

__version__ = "0.1.0.dev0"

__all__ = [
    "RESPONSE_IMAGE_CONFIG_KEY",
    "AddressError",
    "Attachable",
    "AuthConfigError",
    "BaseImageError",
    "BuildArg",
    "BuildKitError",
    "BuildkitInfo",
    "CacheExport",
    "CacheImport",
    "Client",
    "ConnectionLostError",
    "Container",
    "ContainerError",
    "ContainerExitError",
    "ContainerOptions",
    "DaemonError",
    "DaemonUnreachableError",
    "Descriptor",
    "DockerAuthProvider",
    "DockerExport",
    "DockerfileError",
    "ExportError",
    "FileStat",
    "ForwardedSocket",
    "FrontendQueryError",
    "GatewayResolver",
    "ImageExport",
    "LateAttachableError",
    "LintReport",
    "LintWarning",
    "LocalDirError",
    "LocalExport",
    "MobyExport",
    "NullProgress",
    "OCIExport",
    "OCILayoutExport",
    "OnError",
    "Outline",
    "OutlineItem",
    "PatternError",
    "PlainProgress",
    "Process",
    "ProcessResult",
    "ProgressModeError",
    "ProgressModel",
    "ProgressSink",
    "RawJSONProgress",
    "RecordingProgress",
    "RegistryError",
    "Request",
    "RequestOptions",
    "Result",
    "ResultHandler",
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
    "SourceLocation",
    "StatusUpdate",
    "TLSConfig",
    "TarExport",
    "Target",
    "TokenFetchError",
    "UnsupportedExporterError",
    "UpgradeRefusedError",
    "UploadError",
    "UsageRecord",
    "Worker",
    "connect",
    "fan_out",
    "lint",
    "llb",
    "open_progress",
    "outline",
    "targets",
]
