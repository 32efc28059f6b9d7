"""Images that carry their config: ``Session.image`` / ``Session.image_resolver`` against the real daemon.

The config is resolved by the daemon through the gateway (``ResolveSourceMeta``) with the
session's credentials, cached once per session (successes only), and the State is pinned
to the digest that was resolved.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
from test_exporters_registry import pull_manifest

import llblib_async
from llblib_async import DockerAuthProvider, llb
from llblib_async.exporters import ImageExport
from llblib_async.llb import config_ops as co
from llblib_async.request import Request
from llblib_async.solver import Solver
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUSYBOX_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


async def test_image_plus_run_plus_cmd_keeps_the_base_path_and_history(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    tag = uuid.uuid4().hex[:8]
    ref = f"{buildkit_registry.host}/llblib-resolver/app:{tag}"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        base = await session.image(buildkit_busybox_image.ref)
        assert f"@{buildkit_busybox_image.digest}" in repr(llb.to_yaml(base))  # pinned to what was resolved
        assert base.exec_meta.get_env("PATH") == BUSYBOX_PATH.removeprefix("PATH=")
        app = base.apply(co.apply_run("echo $PATH > /path.txt", shell=True), co.cmd("cat", "/path.txt"))
        await session.do(Request.of(app, exports=[ImageExport(ref, push=True, insecure=True)]))
    _, _, config = await pull_manifest(buildkit_registry, "llblib-resolver/app", tag)
    _, _, base_config = await pull_manifest(buildkit_registry, "busybox", "latest")
    assert config["config"]["Env"] == [BUSYBOX_PATH]
    assert config["config"]["Cmd"] == ["cat", "/path.txt"]
    history = [h.get("created_by", "") for h in config["history"]]
    base_history = [h.get("created_by", "") for h in base_config["history"]]
    assert history[: len(base_history)] == base_history  # the base's history, as FROM keeps it
    assert history[len(base_history) :] == [
        "RUN /bin/sh -c 'echo $PATH > /path.txt'",
        'CMD ["cat","/path.txt"]',
    ]
    assert len(config["rootfs"]["diff_ids"]) == len(base_config["rootfs"]["diff_ids"]) + 1


async def test_one_cache_per_session_without_failures(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    missing = f"{buildkit_registry.host}/llblib-resolver/late:{uuid.uuid4().hex[:8]}"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        resolver = session.image_resolver
        assert resolver is session.image_resolver
        inner = resolver._inner
        assert isinstance(inner, llblib_async.GatewayResolver)
        one = await session.image(buildkit_busybox_image.ref)
        two = await session.image(buildkit_busybox_image.ref)
        assert inner.calls == 1
        assert inner._source_meta is True  # v0.34 has ResolveSourceMeta
        assert one.image_config == two.image_config
        with pytest.raises(llblib_async.BuildKitError, match="late"):
            await session.image(missing)
        assert inner.calls == 2
        # The failure was not cached: once the image exists, the same session resolves it.
        await session.do(
            Request.of(
                (await session.image(buildkit_busybox_image.ref)).mkfile("/late", "x"),
                exports=[ImageExport(missing, push=True, insecure=True)],
            )
        )
        late = await session.image(missing)
        assert inner.calls == 3
        assert late.image_config is not None
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as other:
        await other.image(buildkit_busybox_image.ref)
        assert other.image_resolver._inner.calls == 1  # type: ignore[attr-defined]  # a new session, a new cache


def _solver(*attachables: llblib_async.Attachable) -> Solver:
    solver = Solver()
    for attachable in attachables:
        solver.add_attachable(attachable)
    return solver


def _docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory / "config.json"


async def test_resolves_with_the_session_credentials(
    buildkit_daemon: BuildkitDaemon,
    buildkit_auth_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    assert buildkit_auth_registry.auth is not None
    user, password = buildkit_auth_registry.auth
    config = _docker_config(tmp_path / "docker", buildkit_auth_registry.host, user, password)
    ref = f"{buildkit_auth_registry.host}/private/base:v1"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        async with _solver(DockerAuthProvider(config)).session(client) as session:
            base = await session.image(buildkit_busybox_image.ref)
            await session.do(
                Request.of(
                    base.apply(co.add_label("private", "yes")),
                    exports=[ImageExport(ref, push=True, insecure=True)],
                )
            )
        async with _solver(DockerAuthProvider(config)).session(client) as session:
            private = await session.image(ref)
            assert private.image_config is not None
            assert private.image_config.config.label_map["private"] == "yes"
        async with Solver().session(client) as anonymous:
            with pytest.raises(llblib_async.BuildKitError, match="private/base"):
                await anonymous.image(ref)
