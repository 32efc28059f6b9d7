"""Image configs against real peers: the loopback registry, buildkitd, and Go's buildctl.

* :class:`~llblib_async.registry.RegistryResolver` reads the config of the
  ``buildkit_busybox_image`` fixture (built by BuildKit's Dockerfile frontend, so its history has
  ``# buildkit`` records) by tag and by digest, anonymously and with basic auth;
* a State from ``resolve_image`` runs with the image's env, and with the dir, env and
  user set by the config helpers;
* the config from ``marshal_with_image_config`` reaches BuildKit's image exporter as the
  exporter attribute ``containerimage.config`` - the image exporter turns unknown
  attributes into result metadata, which is where it reads the config from, so a plain
  (non-gateway) solve can set it.  Our client has no image exporter yet, so Go's
  ``buildctl`` does the push here (stdin = our Definition bytes); the pushed config is
  read back with the resolver and compared field by field, and the pushed image is
  built on again.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.errors import RegistryError
from llblib_async.llb import config_ops as co
from llblib_async.llb.image_config import ImageConfig
from llblib_async.registry import RegistryResolver
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.binaries import BuildkitBinaries
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUSYBOX_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the ENV of the buildkit_busybox_image fixture's Dockerfile
EPOCH = 1_700_000_000
BUILDCTL_TIMEOUT = 300.0


def _csv_field(text: str) -> str:
    # buildctl parses --output as CSV: a value with commas or quotes must be quoted, "" for ".
    return '"' + text.replace('"', '""') + '"'


async def _buildctl_push(
    binaries: BuildkitBinaries,
    daemon: BuildkitDaemon,
    result: co.ImageDefinition,
    ref: str,
    workdir: Path,
    *,
    docker_config: Path | None = None,
) -> dict[str, Any]:
    """Solve ``result.definition`` with Go's buildctl and push it to ``ref`` with our config attached."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    metadata = workdir / "metadata.json"
    output = ",".join(
        [
            "type=image",
            f"name={ref}",
            "push=true",
            "registry.insecure=true",
            *(_csv_field(f"{k}={v}") for k, v in result.exporter_attrs().items()),
        ]
    )
    env = dict(os.environ)
    if docker_config is not None:
        env["DOCKER_CONFIG"] = str(docker_config)
    argv = [
        str(binaries.buildctl), "--addr", daemon.address, "build",
        "--output", output, "--metadata-file", str(metadata), "--progress", "plain",
    ]  # fmt: skip
    proc = await asyncio.to_thread(
        subprocess.run,
        argv,
        input=result.definition.to_bytes(),
        capture_output=True,
        env=env,
        timeout=BUILDCTL_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    loaded: dict[str, Any] = json.loads(await asyncio.to_thread(metadata.read_text))
    return loaded


async def test_resolver_reads_a_dockerfile_built_image_config(buildkit_busybox_image: PushedImage) -> None:
    resolver = RegistryResolver()
    digest, raw = await resolver.resolve(buildkit_busybox_image.ref, None)
    assert digest == buildkit_busybox_image.digest
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == buildkit_busybox_image.config_digest
    assert await resolver.resolve(buildkit_busybox_image.pinned_ref, None) == (digest, raw)

    resolved = await llb.resolve_image_config(buildkit_busybox_image.ref, resolver)
    config = resolved.config
    assert resolved.raw == raw
    assert config.platform.os == "linux"
    assert config.config.env == (f"PATH={BUSYBOX_PATH}",)
    assert config.config.cmd == ("/bin/sh",)
    assert config.container_config.cmd == ("/bin/sh",)  # adopted: taken from config.Cmd
    assert config.rootfs.type == "layers"
    assert config.rootfs.diff_ids is not None
    assert len(config.rootfs.diff_ids) == 1
    # BuildKit's Dockerfile frontend writes "<instruction> # buildkit" history records
    assert [(h.created_by, h.comment, h.empty_layer) for h in config.history] == [
        ("COPY . / # buildkit", "buildkit.dockerfile.v0", False),
        (f"ENV PATH={BUSYBOX_PATH}", "buildkit.dockerfile.v0", True),
        ('CMD ["/bin/sh"]', "buildkit.dockerfile.v0", True),
    ]
    # decoding is lossless for everything the model keeps: re-encoding gives the same JSON values
    original = json.loads(raw)
    ours = json.loads(ImageConfig.from_json(raw).to_json())
    for key in ("architecture", "os", "rootfs", "history"):
        assert ours[key] == original[key]
    assert {k: v for k, v in ours["config"].items()} == {
        k: v for k, v in original["config"].items() if v not in (None, "", [], {}, False)
    }


async def test_resolved_image_runs_with_the_image_and_helper_settings(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    resolver = llb.CachingResolver(RegistryResolver())
    base = await co.resolve_image(buildkit_busybox_image.ref, resolver, pin_digest=True)
    st = base.apply(
        co.default_dir("/work"),
        co.add_default_env("GREETING", "hello world"),
        co.default_user("65534:65534"),
    )
    ran = co.run(st, 'echo "$PATH|$GREETING|$(pwd)|$(id -u)" > /tmp/facts', shell=True)
    collected = llb.scratch().copy(ran.root, "/tmp/facts", "/facts")
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(collected, exports=[llblib_async.LocalExport(tmp_path / "out")])
    assert (tmp_path / "out" / "facts").read_text() == f"{BUSYBOX_PATH}|hello world|/work|65534\n"
    assert ran.image_config is not None
    assert ran.image_config.config.user == "65534:65534"
    assert ran.image_config.history[-1].created_by == (
        "RUN /bin/sh -c 'echo \"$PATH|$GREETING|$(pwd)|$(id -u)\" > /tmp/facts'"
    )


async def test_exporter_attr_carries_the_config_into_the_pushed_image(
    buildkit_binaries: BuildkitBinaries,
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_registry: Registry,
    tmp_path: Path,
) -> None:
    resolver = RegistryResolver()
    base = await co.resolve_image(buildkit_busybox_image.ref, resolver, pin_digest=True)
    st = base.apply(
        co.add_default_env("GREETING", "hello"),
        co.add_default_env("PATH", f"/opt/bin:{BUSYBOX_PATH}"),
        co.add_label("org.example.title", "config test"),
        co.apply_run("mkdir -p /opt/bin && touch /marker", shell=True),
        co.default_dir("/srv"),
        co.add_exposed_port("8080/tcp"),
        co.add_volume("/data"),
        co.stop_signal("SIGINT"),
        co.entrypoint("/bin/sh", "-c"),
        co.cmd("echo $GREETING"),
    )
    result = co.marshal_with_image_config(st, epoch=EPOCH)
    ours = result.image_config
    assert ours is not None
    ref = f"{buildkit_registry.host}/llblib-config/app:v1"
    metadata = await _buildctl_push(buildkit_binaries, buildkit_daemon, result, ref, tmp_path / "push")

    digest, raw = await resolver.resolve(ref, None)
    assert digest == metadata["containerimage.digest"]
    pushed = ImageConfig.from_json(raw)
    # The exporter replaces only rootfs (it knows the layers); everything else is ours.
    assert pushed.rootfs.type == "layers"
    assert pushed.rootfs.diff_ids is not None
    assert base.image_config is not None
    assert base.image_config.rootfs.diff_ids is not None
    assert pushed.rootfs.diff_ids[0] == base.image_config.rootfs.diff_ids[0]
    assert len(pushed.rootfs.diff_ids) == 2  # busybox + the RUN layer
    assert dataclasses.replace(pushed, rootfs=ours.rootfs) == ours
    assert pushed.created == "2023-11-14T22:13:20Z"
    assert pushed.config.env == ("PATH=/opt/bin:" + BUSYBOX_PATH, "GREETING=hello")
    assert json.loads(raw)["container_config"] == {
        "Cmd": ["echo $GREETING"],
        "Labels": {"org.example.title": "config test"},
    }

    # build on the pushed image: its config (env, dir, entrypoint) comes back through the resolver
    again = await co.resolve_image(ref, resolver, pin_digest=True)
    assert again.image_config == pushed.adopted()
    assert again.working_dir == "/srv"
    ran = again.run('test -f /marker && echo "$GREETING from $(pwd)" > /tmp/out', shell=True)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(
            llb.scratch().copy(ran.root, "/tmp/out", "/out"),
            exports=[llblib_async.LocalExport(tmp_path / "out")],
        )
    assert (tmp_path / "out" / "out").read_text() == "hello from /srv\n"


async def test_resolver_basic_auth_against_a_protected_registry(
    buildkit_binaries: BuildkitBinaries,
    buildkit_daemon: BuildkitDaemon,
    buildkit_auth_registry: Registry,
    tmp_path: Path,
) -> None:
    assert buildkit_auth_registry.auth is not None
    user, password = buildkit_auth_registry.auth
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {buildkit_auth_registry.host: {"auth": token}}})
    )
    st = (
        llb.scratch()
        .with_platform(llb.default_platform())
        .mkfile("/hello", "hi")
        .apply(co.add_label("protected", "yes"), co.cmd("/hello"))
    )
    result = co.marshal_with_image_config(st)
    ref = f"{buildkit_auth_registry.host}/private/app:v1"
    metadata = await _buildctl_push(
        buildkit_binaries, buildkit_daemon, result, ref, tmp_path / "push", docker_config=docker_config
    )

    resolver = RegistryResolver(credentials={buildkit_auth_registry.host: (user, password)})
    resolved = await llb.resolve_image_config(ref, resolver)
    assert resolved.digest == metadata["containerimage.digest"]
    assert resolved.config.config.labels == (("protected", "yes"),)
    assert resolved.config.config.cmd == ("/hello",)
    with pytest.raises(RegistryError, match="requires credentials") as err:
        await RegistryResolver().resolve(ref, None)
    assert err.value.status == 401
