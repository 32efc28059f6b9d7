"""A build request and its outcome: what to build, where its result goes, what to do with it first.

:class:`Request` is an immutable value (``Solver.build`` makes one); a
:class:`~llblib_async.Session` runs it and answers a :class:`SolveResult`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypedDict, Unpack

from . import llb
from .cache import CacheExport, CacheImport
from .errors import ExportError, SolveError
from .exporters import Export, ImageExport
from .gateway.on_error import OnError
from .gateway.options import ContainerOptions
from .gateway.result import Result
from .llb.image_config import EXPORTER_IMAGE_CONFIG_KEY
from .process_result import ProcessResult

__all__ = [
    "RESPONSE_IMAGE_CONFIG_KEY",
    "Descriptor",
    "Request",
    "RequestOptions",
    "ResultHandler",
    "SolveResult",
]

#: Key of the request State's image config (JSON) in ``SolveResult.exporter_response``
#: (Go llblib's ``ExporterImageConfigKey``).
RESPONSE_IMAGE_CONFIG_KEY = "llblib.containerimage.config"

#: ``async def handler(result: Result) -> None``: called after the gateway solve and
#: before the result is returned to the daemon (so before any export).
ResultHandler = Callable[[Result], Awaitable[None]]


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of a build request: ``Solver.build``, ``client.solve``.

    ``label`` prefixes the request's progress (``StatusUpdate.request``); ``exports``
    say where the result goes (:mod:`llblib_async.exporters`); ``on_result`` is one
    result handler or several, called in order with the :class:`Result` before the
    exports (an exception aborts the request and is raised unchanged);
    ``entitlements`` (``network.host``, ``security.insecure``) must also be allowed by
    the daemon; ``frontend_attrs`` are passed in the ``SolveRequest``; ``evaluate``
    solves the result even when nothing reads or exports it; ``cache_exports`` /
    ``cache_imports`` export the build cache after the build and import cache for it
    (registry, local directory, inline: :mod:`llblib_async.cache`); ``record_history``
    (default true, as with Go's client and buildctl) keeps the build in the daemon's
    build history (``buildctl debug history``); false marks it internal
    (``SolveRequest.internal``), which spares the daemon writing the record after the
    build: about 0.1 s per request on an idle test machine (more under load), written
    one after the other when many requests end together (``nox -s bench -- downloads
    --no-history`` compares); ``on_error`` (an :class:`~llblib_async.OnError`) debugs a
    failed exec in a container on the failed step's filesystem before the error is
    raised (it makes the solve ``evaluate``, so failures surface in the request).
    """

    label: str
    exports: Iterable[Export]
    on_result: ResultHandler | Iterable[ResultHandler]
    entitlements: Iterable[str]
    frontend_attrs: Mapping[str, str] | None
    evaluate: bool
    cache_exports: Iterable[CacheExport]
    cache_imports: Iterable[CacheImport]
    record_history: bool
    on_error: OnError | None


@dataclass(frozen=True, slots=True)
class Request:
    """One build for :meth:`Session.do <llblib_async.Session.do>` (an immutable value).

    Exactly one of ``state`` and ``definition`` is given; the other fields are the
    :class:`RequestOptions` it was made with (``result_handlers`` from ``on_result``).
    Make one with :meth:`of` or ``Solver.build``. A *container request*
    (``Solver.container``) has ``container`` set: ``state`` is the container's root,
    and running it runs the container instead of building the State.
    """

    state: llb.State | None = None
    definition: llb.Definition | None = None
    label: str = ""
    exports: tuple[Export, ...] = ()
    result_handlers: tuple[ResultHandler, ...] = ()
    entitlements: tuple[str, ...] = ()
    frontend_attrs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    evaluate: bool = False
    cache_exports: tuple[CacheExport, ...] = ()
    cache_imports: tuple[CacheImport, ...] = ()
    record_history: bool = True
    on_error: OnError | None = None
    container: ContainerOptions | None = None

    def __post_init__(self) -> None:
        if (self.state is None) == (self.definition is None):
            raise TypeError("Request needs exactly one of state= and definition=")
        object.__setattr__(self, "exports", tuple(self.exports))
        object.__setattr__(self, "result_handlers", tuple(self.result_handlers))
        object.__setattr__(self, "entitlements", tuple(self.entitlements))
        object.__setattr__(self, "frontend_attrs", MappingProxyType(dict(self.frontend_attrs)))
        object.__setattr__(self, "cache_exports", tuple(self.cache_exports))
        object.__setattr__(self, "cache_imports", tuple(self.cache_imports))
        if self.on_error is not None and not isinstance(self.on_error, OnError):
            raise TypeError(f"on_error must be an llblib_async.OnError, not {self.on_error!r}")
        if self.container is not None and self.state is None:
            raise TypeError("a container request needs its root State (state=)")

    @classmethod
    def of(cls, target: llb.State | llb.Definition, **options: Unpack[RequestOptions]) -> Request:
        """A request for a State or a Definition; ``options`` are :class:`RequestOptions`."""
        unknown = sorted(options.keys() - RequestOptions.__annotations__.keys())
        if unknown:
            raise TypeError(f"unexpected request option {unknown[0]!r}")
        on_result = options.get("on_result", ())
        return cls(
            state=target if isinstance(target, llb.State) else None,
            definition=target if isinstance(target, llb.Definition) else None,
            label=options.get("label", ""),
            exports=tuple(options.get("exports", ())),
            result_handlers=(on_result,) if callable(on_result) else tuple(on_result),
            entitlements=tuple(options.get("entitlements", ())),
            frontend_attrs=MappingProxyType(dict(options.get("frontend_attrs") or {})),
            evaluate=options.get("evaluate", False),
            cache_exports=tuple(options.get("cache_exports", ())),
            cache_imports=tuple(options.get("cache_imports", ())),
            record_history=options.get("record_history", True),
            on_error=options.get("on_error"),
        )

    @property
    def image_config(self) -> llb.ImageConfig | None:
        """The State's image config (``None`` for a Definition, a State without one, a container).

        A bare ``llb.image`` State has a config that is only a pending base
        (:attr:`llb.ImageConfig.is_bare_base`): that is ``None`` here too, as it has
        nothing of its own. A config with a pending base is returned unmerged; the
        pipeline merges it onto the base's config when :attr:`pending_base_config` says so.
        """
        if self.container is not None:
            return None
        config = self.state.image_config if self.state is not None else None
        return None if config is None or config.is_bare_base else config

    @property
    def pending_base_config(self) -> llb.ImageConfig | None:
        """The State's config when an export must get it merged onto its base image's config.

        That is when the config has a pending :attr:`~llblib_async.llb.ImageConfig.base`
        (the State is built on ``llb.image(ref)``) and some export of the request is an
        image exporter without an explicit ``image_config``; otherwise ``None`` (nothing
        to resolve: a request that exports no image never asks the registry).
        """
        config = self.state.image_config if self.state is not None else None
        if config is None or config.base is None:
            return None
        for export in self.exports:
            if getattr(export, "accepts_image_config", False) and (
                EXPORTER_IMAGE_CONFIG_KEY not in export.attrs
            ):
                return config
        return None

    async def marshal(self) -> llb.Definition:
        """The request's Definition (marshalling the State, resolving lazy parts, now)."""
        if self.definition is not None:
            return self.definition
        assert self.state is not None
        if self.container is not None:
            return await llb.marshal_async(self.container.exec_state(self.state))
        return await llb.marshal_async(self.state)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what the daemon reports as ``containerimage.descriptor``.

    ``platform`` is ``os/architecture[/variant]`` (``None`` when not given, as in an
    index); ``annotations`` are the descriptor's own (e.g. the creation time).
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    platform: str | None = None

    @classmethod
    def from_json(cls, data: bytes | str) -> Descriptor:
        """Decode the JSON of an OCI descriptor; raises ``ValueError`` if it is not one."""
        raw: Any = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
            raise ValueError(f"not an OCI descriptor: {data!r}")
        platform = raw.get("platform")
        spec = None
        if isinstance(platform, dict):
            parts = [platform.get("os", ""), platform.get("architecture", ""), platform.get("variant", "")]
            spec = "/".join(p for p in parts if p)
        return cls(
            media_type=str(raw.get("mediaType", "")),
            digest=raw["digest"],
            size=int(raw.get("size", 0)),
            annotations=MappingProxyType({str(k): str(v) for k, v in (raw.get("annotations") or {}).items()}),
            platform=spec,
        )


@dataclass(frozen=True, slots=True)
class SolveResult:
    """What a finished build reports: its id, typed fields of its exports, and the raw
    merged exporter responses.

    ``exporter_response`` is the daemon's map as it came (Go's
    ``SolveResponse.ExporterResponse``); when the request was a State with an image
    config it also holds it (JSON) under :data:`RESPONSE_IMAGE_CONFIG_KEY`. The
    properties read it with types: :attr:`image_digest`, :attr:`config_digest`,
    :attr:`descriptor`, :attr:`image_names`, :attr:`image_config`. The daemon merges the
    responses of all exporters of a request into one map, so with several image
    exporters they describe the one it reported last (in practice the same image).
    ``pushed_names`` and ``outputs`` come from the request: the names its
    :class:`~llblib_async.ImageExport` exporters pushed (the daemon does not say which
    names were pushed) and the client-side files and directories its exports wrote.
    (Deviation from Go llblib, which answers only the raw map.) A container request's
    process is ``container``, and ``mounts`` holds a State of each of its
    ``keep_mounts`` (a local copy). With ``on_error=OnError(..., drop_error=True)``, a
    failed build succeeds with its error in ``error`` and the results of the
    ``OnError`` commands in ``debug``.
    """

    ref: str
    exporter_response: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pushed_names: tuple[str, ...] = ()
    outputs: tuple[Path, ...] = ()
    container: ProcessResult | None = None
    mounts: Mapping[str, llb.State] = field(default_factory=lambda: MappingProxyType({}))
    debug: tuple[ProcessResult, ...] = ()
    error: SolveError | None = None

    @property
    def image_digest(self) -> str | None:
        """The image's manifest (or index) digest, ``sha256:...`` (``containerimage.digest``)."""
        return self.exporter_response.get("containerimage.digest")

    @property
    def config_digest(self) -> str | None:
        """The image config's digest (``containerimage.config.digest``)."""
        return self.exporter_response.get("containerimage.config.digest")

    @property
    def descriptor(self) -> Descriptor | None:
        """The exported manifest's OCI descriptor (``containerimage.descriptor``, base64 JSON).

        Raises :class:`~llblib_async.errors.ExportError` naming the value if the daemon
        sent something that is not one.
        """
        raw = self.exporter_response.get("containerimage.descriptor")
        if raw is None:
            return None
        try:
            return Descriptor.from_json(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError, TypeError) as e:
            raise ExportError(f"containerimage.descriptor {raw!r} is not a base64 OCI descriptor: {e}") from e

    @property
    def image_names(self) -> tuple[str, ...]:
        """The names the image was exported under (``image.name``, as the daemon
        normalised them: ``x/y:1`` becomes ``docker.io/x/y:1`` for tarballs)."""
        names = self.exporter_response.get("image.name", "")
        return tuple(n for n in names.split(",") if n)

    @property
    def image_config(self) -> llb.ImageConfig | None:
        """The request State's image config that went into the image (``None`` without one)."""
        raw = self.exporter_response.get(RESPONSE_IMAGE_CONFIG_KEY)
        return llb.ImageConfig.from_json(raw) if raw is not None else None

    @classmethod
    def of(cls, request: Request, ref: str, exporter_response: Mapping[str, str]) -> SolveResult:
        """The result of ``request`` (build ``ref``) with the daemon's ``exporter_response``."""
        pushed = tuple(n for e in request.exports if isinstance(e, ImageExport) and e.push for n in e.names)
        outputs = tuple(
            Path(dest) for e in request.exports if isinstance(dest := getattr(e, "dest", None), str | Path)
        )
        return cls(
            ref=ref,
            exporter_response=MappingProxyType(dict(exporter_response)),
            pushed_names=pushed,
            outputs=outputs,
        )
