"""Resolving image configs through the daemon, with the session's registry credentials.

:class:`GatewayResolver` is an :class:`~llblib_async.llb.ImageConfigResolver` that asks
BuildKit itself (``LLBBridge.ResolveSourceMeta`` on daemons that have it, else
``LLBBridge.ResolveImageConfig``) instead of talking to the registry from the client:
the daemon pulls the manifest and config with the credentials the session's
:class:`~llblib_async.DockerAuthProvider` (or any auth attachable) hands out, through
its own registry mirrors and TLS settings, exactly as a build's ``FROM`` would. The
answer is the digest of what the reference names (the index of a multi-platform
image) and the config for the platform.

A request of the session that resolves (a lazy State, a frontend) uses its own build;
anywhere else a small build of its own is opened for the call.
:attr:`Session.image_resolver <llblib_async.Session.image_resolver>` wraps one in a
:class:`~llblib_async.llb.CachingResolver`: one cache per session, shared by all its
requests, that keeps only successes (a failure or a cancelled call is asked again).
"""

from __future__ import annotations

from . import llb
from ._pb import pb
from ._pb.moby.buildkit.v1 import frontend as gw
from ._pipeline.run import FrontendBridge, SessionServices, current_frontend_bridge, run_request
from .errors import DaemonError
from .request import Request

__all__ = ["GatewayResolver"]


def _pb_platform(platform: llb.Platform | None) -> pb.Platform | None:
    if platform is None:
        return None
    return pb.Platform(
        os=platform.os,
        architecture=platform.architecture,
        variant=platform.variant,
        os_version=platform.os_version,
        os_features=list(platform.os_features),
    )


class GatewayResolver:
    """Fetches image configs through BuildKit's gateway in the session ``services`` belong to.

    ``resolve_mode`` is BuildKit's: ``"default"`` (use the local image store if it has the
    image, else the registry), ``"pull"`` (always ask the registry), ``"local"``.
    Errors are the daemon's (:class:`~llblib_async.errors.SolveError` naming the reference).
    """

    def __init__(self, services: SessionServices, *, resolve_mode: str = "default") -> None:
        if resolve_mode not in ("default", "pull", "local"):
            raise ValueError(f"resolve_mode must be 'default', 'pull' or 'local', not {resolve_mode!r}")
        self._services = services
        self._resolve_mode = resolve_mode
        self._source_meta: bool | None = None  # does the daemon have ResolveSourceMeta?
        self.calls = 0  # how many times the daemon was asked (for tests and benchmarks)

    async def resolve(self, ref: str, platform: llb.Platform | None) -> tuple[str, bytes]:
        """``(digest, config JSON)`` of normalised image ``ref`` for ``platform``."""
        bridge = current_frontend_bridge()
        if bridge is not None and bridge.session_id == self._services.session_id:
            return await self._ask(bridge, ref, platform)
        answer: list[tuple[str, bytes]] = []

        async def ask(runner: FrontendBridge, request: Request, cache: object) -> gw.Result:
            answer.append(await self._ask(runner, ref, platform))
            return gw.Result()

        await run_request(Request.of(llb.scratch(), label=f"resolve {ref}"), self._services, target=ask)
        return answer[0]

    async def _ask(
        self, runner: FrontendBridge, ref: str, platform: llb.Platform | None
    ) -> tuple[str, bytes]:
        self.calls += 1
        pb_platform = _pb_platform(platform)
        if self._source_meta is not False:
            try:
                _, digest, config = await runner.bridge.resolve_source_meta(
                    f"docker-image://{ref}", platform=pb_platform, resolve_mode=self._resolve_mode
                )
            except DaemonError as err:
                if err.status != "UNIMPLEMENTED":
                    raise
                self._source_meta = False  # BuildKit < v0.13: fall back for good
            else:
                self._source_meta = True
                return digest, config
        _, digest, config = await runner.bridge.resolve_image_config(
            ref, platform=pb_platform, resolve_mode=self._resolve_mode, session_id=self._services.session_id
        )
        return digest, config
