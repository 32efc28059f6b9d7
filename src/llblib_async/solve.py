"""One build request, end to end: session, Solve, Status, exporters.

This is the single-request path (``client.solve``): it opens a session of its own
with exactly the local directories and export targets the request needs, runs
``Control.Solve`` and ``Control.Status`` side by side, and closes everything in
order, also when the build fails or the caller is cancelled (cancelling the Solve
call cancels the build in the daemon).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import anyio

from . import llb
from ._docker_session import open_client_session
from ._errors_grpc import TRANSLATED_ERRORS, translating_errors
from ._fsutil.receive import FileSendProvider
from ._fsutil.send import FileSyncProvider
from ._pb.moby.buildkit import v1 as control
from ._session import Attachable
from .client import Client, new_id
from .errors import BuildKitError, LocalDirError, SolveError, UploadError
from .exporters import CacheExport, CacheImport, Export, UnsupportedExporterError, plan_cache
from .llb.image_config import EXPORTER_IMAGE_CONFIG_KEY
from .progress import NullProgress, ProgressSink, StatusUpdate

# How long the Status stream may keep going after Solve returned before we stop
# listening: the daemon normally ends it at once (Go's client waits 5 s too).
STATUS_DRAIN_TIMEOUT = 5.0
# Output kept per vertex so a failure can show the end of the failing step's log.
LOG_TAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class SolveResult:
    """What a finished build reports: its id and the merged exporter responses."""

    ref: str
    exporter_response: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class _FailureContext:
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
        )
        enriched.__cause__ = err.__cause__
        return enriched


def _exporter_pb(export: Export, image_config: llb.ImageConfig | None) -> control.Exporter:
    attrs = dict(export.attrs)
    if image_config is not None and getattr(export, "accepts_image_config", False):
        # image/docker/oci/moby exporters read the config from this attr (spec §6)
        attrs.setdefault(EXPORTER_IMAGE_CONFIG_KEY, image_config.to_json().decode())
    return control.Exporter(type=export.type, attrs=attrs)


def upload_failure(filesync: FileSyncProvider, names: Iterable[str], since: int) -> UploadError | None:
    """The first failure of *our* side of a transfer of one of ``names`` (transfers
    ``since`` on), which the daemon tends to report only as ``unexpected EOF``."""
    wanted = set(names)
    for t in filesync.transfers[since:]:
        if t.error and t.name in wanted:
            return UploadError(t.name, t.error)
    return None


def _unsupported_exporter(err: BuildKitError, exports: Sequence[Export]) -> UnsupportedExporterError | None:
    """Map the daemon's "exporter not found" failure to a typed error."""
    text = str(err)
    for e in exports:
        if f'exporter "{e.type}" could not be found' in text or f"exporter {e.type!r} not found" in text:
            return UnsupportedExporterError(e.type, text)
    return None


async def solve(
    client: Client,
    target: llb.State | llb.Definition,
    *,
    exports: Sequence[Export] = (),
    progress: ProgressSink | None = None,
    label: str = "",
    attachables: Sequence[Attachable] = (),
    entitlements: Sequence[str] = (),
    cache_exports: Sequence[CacheExport] = (),
    cache_imports: Sequence[CacheImport] = (),
) -> SolveResult:
    """Build ``target`` on the daemon and run ``exports``; return the exporter response.

    Image exporters (``ImageExport``, ``DockerExport``, ``OCIExport``, ``MobyExport``)
    without an explicit ``image_config`` get the State's image config.
    ``cache_exports``/``cache_imports`` fill ``SolveRequest.cache``.

    ``attachables`` are served in the request's session besides the local dirs and
    export targets (secrets, ssh agents...); ``entitlements`` (``network.host``,
    ``security.insecure``) must also be allowed by the daemon.

    Raises :class:`~llblib_async.errors.SolveError` when the build fails (with the
    failing step's name and log tail), :class:`~llblib_async.errors.ConnectionLostError`
    when the daemon goes away mid-build, and
    :class:`~llblib_async.exporters.UnsupportedExporterError` for an exporter the
    daemon lacks (a classic Docker daemon has only ``moby``, ``local``, ``tar``).
    """
    if (
        client.is_moby
        and isinstance(target, llb.State)
        and target.image_config is not None
        and any(getattr(e, "accepts_image_config", False) for e in exports)
    ):
        # Docker 20.10's moby exporter takes the image config only from the result
        # metadata, which only a gateway build can set: run the request as one.
        return await _solve_as_gateway_build(
            client,
            target,
            exports=exports,
            progress=progress,
            label=label,
            attachables=attachables,
            entitlements=entitlements,
            cache_exports=cache_exports,
            cache_imports=cache_imports,
        )
    # marshal_async resolves lazy states (e.g. images pinned at marshal time) first.
    definition = target if isinstance(target, llb.Definition) else await llb.marshal_async(target)
    for name, path in definition.locals.items():
        if not path.is_dir():
            reason = "does not exist" if not path.exists() else "is not a directory"
            raise LocalDirError(name, str(path), reason)
    sink = progress if progress is not None else NullProgress()
    failure = _FailureContext()
    ref = new_id()
    session_id = new_id()
    targets = {i: t for i, e in enumerate(exports) if (t := e.session_target()) is not None}
    filesync = FileSyncProvider(definition.locals)
    served: list[Attachable] = [filesync, FileSendProvider(targets), *attachables]
    cache = await plan_cache(cache_exports, cache_imports, exports)
    if cache.store is not None:
        served.append(cache.store)
    image_config = target.image_config if isinstance(target, llb.State) else None
    exporters = [_exporter_pb(e, image_config) for e in exports]
    request = control.SolveRequest(
        ref=ref,
        definition=definition.to_pb(),
        session=session_id,
        exporters=exporters,
        entitlements=list(entitlements),
    )
    cache_options = cache.options_pb()
    if cache_options is not None:
        request.cache = cache_options
    if exporters and client.is_moby:
        # Daemons embedding BuildKit < v0.13 (Docker 20.10) read only the deprecated
        # single-exporter fields; newer ones ignore these when Exporters is set.
        request.exporter_deprecated = exporters[0].type
        request.exporter_attrs_deprecated = dict(exporters[0].attrs)

    async def follow_status() -> None:
        try:
            async for msg in client.control.status(control.StatusRequest(ref=ref)):
                update = StatusUpdate.from_pb(msg, request=label)
                failure.observe(update)
                sink.update(update)
        except TRANSLATED_ERRORS:
            # Progress is best effort: the Solve call reports the real outcome.
            pass

    response: control.SolveResponse | None = None
    failed: BuildKitError | None = None
    session = open_client_session(client, session_id=session_id, attachables=served)
    async with session, anyio.create_task_group() as tg:
        tg.start_soon(follow_status)
        try:
            with translating_errors("Solve", client.address):
                response = await client.control.solve(request)
        except BuildKitError as err:
            failed = err
        # Let the Status stream deliver the last logs (it normally ends by itself).
        tg.cancel_scope.deadline = anyio.current_time() + STATUS_DRAIN_TIMEOUT
    if failed is not None:
        mapped = _unsupported_exporter(failed, exports) or upload_failure(filesync, definition.locals, 0)
        if mapped is not None:
            raise mapped from failed
        raise failure.enrich(failed)
    assert response is not None
    await cache.finish(response.exporter_response)
    return SolveResult(ref=ref, exporter_response=MappingProxyType(dict(response.exporter_response)))


async def _solve_as_gateway_build(
    client: Client,
    target: llb.State,
    *,
    exports: Sequence[Export],
    progress: ProgressSink | None,
    label: str,
    attachables: Sequence[Attachable],
    entitlements: Sequence[str],
    cache_exports: Sequence[CacheExport],
    cache_imports: Sequence[CacheImport],
) -> SolveResult:
    """:func:`solve` through a one-request :class:`~llblib_async.Solver` session."""
    from .solver import Solver  # solver -> session -> this module

    solver = Solver()
    for attachable in attachables:
        solver.add_attachable(attachable)
    request = solver.build(
        target,
        label=label,
        exports=exports,
        entitlements=entitlements,
        cache_exports=cache_exports,
        cache_imports=cache_imports,
    )
    async with solver.session(client, progress=progress) as session:
        return await session.do(request)
