"""States made by BuildKit frontends: :func:`frontend` (llblib's ``Frontend``).

A frontend turns its inputs (a build context, a Dockerfile, named contexts) and its
options into an LLB graph and an image config, inside the daemon: the built-in
``dockerfile.v0``, or any frontend image run by ``gateway.v0``. ``llb.frontend(...)``
returns a State at once; the frontend runs when a session marshals the graph (it is a
lazy State), and the State then stands for the frontend's result: the graph it
returned (imported with its source map, so build errors point at the Dockerfile's
lines) and its image config (``containerimage.config`` of the result, applied like
``FROM``: env, working dir, user, platform).

A frontend needs a running build to talk to, so a frontend State can be marshaled only
by the request pipeline of a :class:`~llblib_async.Session` (``Session.do``,
``client.solve``, ``Solver.build``): it installs a :class:`FrontendRunner` for the
marshal. Anywhere else :class:`~llblib_async.llb.UnresolvedLazyStateError` says so.
When the State handed to the session *is* a frontend State, the frontend's own result
is returned to the daemon (every per-platform ref and config, what ``buildctl build
--frontend`` exports) instead of a graph built on it.

Differences from llblib: results are memoised per platform *and session* (a frontend
result names the session's local directories), and a failed frontend run is not
memoised (the next marshal runs it again). Options are keyword arguments, not option
objects.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from .._pb import pb
from ..errors import LocalDirError
from .async_state import LazyContext, LazyVertex, UnresolvedLazyStateError, marshal_async
from .base_config import current_base_resolver, resolve_base_config
from .config_ops import image_defaults
from .definition_import import from_definition
from .image_config import EXPORTER_IMAGE_CONFIG_KEY, ImageConfig
from .platform import Platform
from .state import State
from .vertex import MarshalContext, Output

__all__ = [
    "DOCKERFILE_FRONTEND",
    "GATEWAY_FRONTEND",
    "FrontendRequest",
    "FrontendResult",
    "FrontendRunner",
    "FrontendSpec",
    "FrontendVertex",
    "current_frontend_runner",
    "frontend",
    "frontend_spec",
    "image_config_of_result",
    "using_frontend_runner",
]

DOCKERFILE_FRONTEND = "dockerfile.v0"
"""BuildKit's built-in Dockerfile frontend."""
GATEWAY_FRONTEND = "gateway.v0"
"""The frontend that runs a frontend image (option ``source``)."""


@dataclass(frozen=True, slots=True)
class FrontendRequest:
    """One frontend run, ready for ``LLBBridge.Solve``: ``frontend`` (``dockerfile.v0`` or
    ``gateway.v0``), its options, its inputs marshaled, and the local directories the
    session must serve for it (inputs' ``local://`` sources and the frontend's own)."""

    frontend: str
    opts: Mapping[str, str]
    inputs: Mapping[str, pb.Definition]
    locals: Mapping[str, Path]


@dataclass(frozen=True, slots=True)
class FrontendResult:
    """What a frontend returned: the result ref's graph (``definition``), the per-platform
    refs' graphs (``refs``, keyed ``os/arch[/variant]``), and the result metadata."""

    definition: pb.Definition | None = None
    refs: Mapping[str, pb.Definition] = field(default_factory=lambda: MappingProxyType({}))
    metadata: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


class FrontendRunner(Protocol):
    """Runs a frontend in a build (the request pipeline provides one while it marshals)."""

    async def run_frontend(self, request: FrontendRequest) -> FrontendResult:
        """Run ``request`` and return its result; raise the build's error if it fails."""
        ...


_RUNNER: ContextVar[FrontendRunner | None] = ContextVar("llblib_async.llb.frontend_runner", default=None)


def current_frontend_runner() -> FrontendRunner | None:
    """The runner installed by :func:`using_frontend_runner` here (``None`` outside a build)."""
    return _RUNNER.get()


@contextmanager
def using_frontend_runner(runner: FrontendRunner) -> Iterator[None]:
    """Frontend States marshaled in this block (and tasks started in it) run with ``runner``."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    """What a frontend State runs: ``source`` (``dockerfile.v0`` or a frontend image /
    named context for ``gateway.v0``), ``inputs`` (States), ``opts`` and the host
    directories the frontend reads itself (``locals``: ``contextkey``, ``local:`` contexts)."""

    source: str
    inputs: Mapping[str, State] = field(default_factory=lambda: MappingProxyType({}))
    opts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    locals: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))

    def with_opts(self, **changes: str) -> FrontendSpec:
        """This spec with more options (``requestid`` for a query, say)."""
        return FrontendSpec(self.source, self.inputs, MappingProxyType({**self.opts, **changes}), self.locals)

    async def request(self, platform: Platform | str | None = None) -> FrontendRequest:
        """Marshal the inputs (resolving lazy ones) and assemble the ``LLBBridge.Solve`` request.

        Inputs that marshal to nothing (scratch) are left out, as BuildKit rejects empty
        input definitions. An input carrying an image config passes it to the frontend
        as ``input-metadata:<name>`` (how ``FROM <named context>`` learns its env); an
        input on ``llb.image`` passes its config merged onto the base image's, resolved
        with the build's base resolver (the session's ``image_resolver``), as a
        ``docker-image://`` named context would.
        """
        opts = dict(self.opts)
        if self.source == DOCKERFILE_FRONTEND:
            frontend_type = DOCKERFILE_FRONTEND
        else:
            frontend_type = GATEWAY_FRONTEND
            opts["source"] = self.source
        inputs: dict[str, pb.Definition] = {}
        locals_: dict[str, Path] = dict(self.locals)
        for name, state in self.inputs.items():
            definition = await marshal_async(state, platform=platform)
            if not definition.ops:
                continue
            inputs[name] = definition.to_pb()
            for local, path in definition.locals.items():
                known = locals_.setdefault(local, path)
                if known != path:
                    raise ValueError(
                        f"two local sources are named {local!r} but use different directories: "
                        f"{known} and {path}"
                    )
            image_config = await _input_config(state.image_config, platform)
            if image_config is not None:
                config = base64.b64encode(image_config.to_json()).decode()
                opts[f"input-metadata:{name}"] = json.dumps({EXPORTER_IMAGE_CONFIG_KEY: config})
        return FrontendRequest(
            frontend=frontend_type,
            opts=MappingProxyType(opts),
            inputs=MappingProxyType(inputs),
            locals=MappingProxyType(locals_),
        )


async def _input_config(config: ImageConfig | None, platform: Platform | str | None) -> ImageConfig | None:
    """The config to hand the frontend for an input: merged onto its pending base (``llb.image``)
    when the build has a base resolver, else its own (none for a bare ``llb.image``)."""
    if config is None or config.base is None:
        return config
    resolver = current_base_resolver()
    if resolver is not None:
        plat = Platform.parse(platform) if isinstance(platform, str) else platform
        return await resolve_base_config(config, resolver, platform=plat)
    return None if config.is_bare_base else config


def image_config_of_result(metadata: Mapping[str, bytes], platform: str | None) -> ImageConfig | None:
    """The image config a frontend result carries for ``platform`` (``None``: the single one)."""
    raw = None
    if platform is not None:
        raw = metadata.get(f"{EXPORTER_IMAGE_CONFIG_KEY}/{platform}")
    if raw is None:
        raw = metadata.get(EXPORTER_IMAGE_CONFIG_KEY)
    if not raw:
        return None
    return ImageConfig.from_json(raw).adopted()


async def _no_fn(ctx: LazyContext) -> State:  # pragma: no cover - never called
    raise AssertionError("FrontendVertex computes its State itself")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class FrontendVertex(LazyVertex):
    """The graph node of a frontend State: stands for the graph the frontend returns."""

    _memoise_failures = False

    spec: FrontendSpec = field(default_factory=lambda: FrontendSpec(DOCKERFILE_FRONTEND))

    async def _produce(self, ctx: MarshalContext) -> State:
        runner = _RUNNER.get()
        if runner is None:
            raise UnresolvedLazyStateError(self._needs_session())
        request = await self.spec.request(ctx.platform)
        result = await runner.run_frontend(request)
        return state_of_result(result, ctx.platform)

    def _needs_session(self) -> str:
        return (
            f"{self!r} runs a frontend, which needs a build: solve it in a session "
            "(Session.do, client.solve, Solver.build) or get its result with "
            "`await session.resolve(state)`"
        )

    def _follow(self, output: Output, ctx: MarshalContext) -> Output | None:
        if self.result(ctx) is None:
            raise UnresolvedLazyStateError(self._needs_session())
        return LazyVertex._follow(self, output, ctx)

    def __repr__(self) -> str:
        return f"<FrontendVertex {self.label}>"


def state_of_result(result: FrontendResult, platform: Platform) -> State:
    """The State for a frontend's result: its graph and (applied like ``FROM``) its image config.

    A multi-platform result gives the ref of ``platform`` (or the only one).
    """
    key = None
    definition = result.definition
    if definition is None and result.refs:
        key = str(platform.normalize())
        if key not in result.refs:
            if len(result.refs) != 1:
                raise LookupError(f"the frontend returned no result for {key} (it has {sorted(result.refs)})")
            key = next(iter(result.refs))
        definition = result.refs[key]
    state = from_definition(definition) if definition is not None else State()
    config = image_config_of_result(result.metadata, key)
    if config is not None:
        state = image_defaults(config)(state)
    return state


def frontend(
    source: str,
    *,
    inputs: Mapping[str, State] | None = None,
    opts: Mapping[str, str] | None = None,
    locals: Mapping[str, str | os.PathLike[str]] | None = None,
    label: str | None = None,
) -> State:
    """A State holding the result of frontend ``source`` (llblib's ``Frontend``).

    ``source`` is ``"dockerfile.v0"`` (BuildKit's built-in Dockerfile frontend) or the
    image of a frontend run by ``gateway.v0`` (``"127.0.0.1:5000/dockerfile:1"``), or
    a name that ``opts={"context:<name>": "input:<x>"}`` points at an input. ``inputs``
    are States the frontend reads by name (``context``, ``dockerfile``, named
    contexts); ``opts`` its options (``build-arg:X``, ``target``, ``filename``...);
    ``locals`` host directories the frontend reads through the session by name
    (``context:x=local:<name>``). The State can be used like any other: run on it,
    copy from it, merge it, export it. See :func:`~llblib_async.llb.dockerfile` for
    Dockerfiles.
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f"frontend source must be a non-empty string, not {source!r}")
    checked_inputs: dict[str, State] = {}
    for name, state in (inputs or {}).items():
        if not isinstance(state, State):
            raise TypeError(f"frontend input {name!r} must be an llb.State, not {type(state).__name__}")
        checked_inputs[name] = state
    checked_opts: dict[str, str] = {}
    for key, value in (opts or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"frontend option {key!r}={value!r}: keys and values must be strings")
        checked_opts[key] = value
    checked_locals = {name: Path(path).absolute() for name, path in (locals or {}).items()}
    for name, path in checked_locals.items():
        if not path.is_dir():
            raise LocalDirError(
                name, str(path), "does not exist" if not path.exists() else "is not a directory"
            )
    spec = FrontendSpec(
        source=source,
        inputs=MappingProxyType(checked_inputs),
        opts=MappingProxyType(checked_opts),
        locals=MappingProxyType(checked_locals),
    )
    return frontend_state(spec, label=label or source)


def frontend_state(spec: FrontendSpec, *, label: str) -> State:
    """The State of ``spec`` (a fresh vertex: its own memo)."""
    return State(output=Output(FrontendVertex(fn=_no_fn, label=label, spec=spec), 0))


def frontend_spec(state: State) -> FrontendSpec | None:
    """The :class:`FrontendSpec` if ``state`` is exactly a frontend's result (no config attached)."""
    if state.output is None or state.output.index != 0 or state.image_config is not None:
        return None
    vertex = state.output.vertex
    return vertex.spec if isinstance(vertex, FrontendVertex) else None
