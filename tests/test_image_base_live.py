"""A State on ``llb.image(ref)`` exported as an image inherits the base's config, as ``FROM`` does.

Against the real daemon and the loopback registry: the base config is resolved by the
request pipeline through the session's ``image_resolver`` (inside the request's own
build, cached once per session), merged under the State's config and handed to the
exporters; ``inherit_config=False`` opts out; a base that cannot be resolved fails the
request with :class:`~llblib_async.BaseImageError` and exports nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_exporters_registry import _get, pull_manifest

import llblib_async
from llblib_async import llb
from llblib_async.exporters import ImageExport, LocalExport, MobyExport, OCIExport
from llblib_async.llb import config_ops as co
from llblib_async.request import RESPONSE_IMAGE_CONFIG_KEY, Request
from llblib_async.solver import Solver
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.dockerd import DockerDaemon
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUSYBOX_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"  # ENV of the busybox fixture's Dockerfile
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "image_base.py"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "image-config.md"


def _resolver_calls(session: llblib_async.Session) -> int:
    inner = session.image_resolver._inner
    assert isinstance(inner, llblib_async.GatewayResolver)
    return inner.calls


def _created_by(config: dict[str, Any]) -> list[str]:
    return [h.get("created_by", "") for h in config.get("history", [])]


async def test_image_run_cmd_keeps_the_base_env_and_history_once_per_session(
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    _, _, base_config = await pull_manifest(buildkit_registry, "busybox", buildkit_busybox_image.tag)
    app = (
        llb.image(buildkit_busybox_image.ref)
        .run("echo $PATH > /path.txt", shell=True)
        .root.apply(
            co.add_default_env("APP", "one"), co.add_label("org.example.app", "yes"), co.cmd("cat", "/p")
        )
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        assert _resolver_calls(session) == 0
        for name in ("one", "two"):
            result = await session.do(
                Request.of(
                    app,
                    exports=[
                        ImageExport(
                            f"{buildkit_registry.host}/llblib-base/{name}:{tag}", push=True, insecure=True
                        )
                    ],
                )
            )
        assert _resolver_calls(session) == 1  # the base config is resolved once per session
        # Runs do not see the base's env (only the exported config inherits it).
        out = tmp_path / "out"
        await session.do(Request.of(app, exports=[LocalExport(out)]))
        assert _resolver_calls(session) == 1  # a local export needs no image config
    # BuildKit's default PATH, not the base's
    assert (out / "path.txt").read_text() == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    for name in ("one", "two"):
        _, _, config = await pull_manifest(buildkit_registry, f"llblib-base/{name}", tag)
        assert config["config"]["Env"] == [BUSYBOX_PATH, "APP=one"]
        assert config["config"]["Cmd"] == ["cat", "/p"]
        assert config["config"]["Labels"] == {"org.example.app": "yes"}
        base_history = _created_by(base_config)
        history = _created_by(config)
        assert history[: len(base_history)] == base_history  # the base's history first, as FROM keeps it
        # a plain run records no history: BuildKit's exporter appends a record for its layer
        assert history[len(base_history) :] == [
            "ENV APP=one",
            "LABEL org.example.app=yes",
            'CMD ["cat","/p"]',
            "mount / from exec /bin/sh -c echo $PATH > /path.txt",
        ]
        assert len(config["rootfs"]["diff_ids"]) == len(base_config["rootfs"]["diff_ids"]) + 1
        assert (config["os"], config["architecture"]) == (base_config["os"], base_config["architecture"])
    reported = json.loads(result.exporter_response[RESPONSE_IMAGE_CONFIG_KEY])
    assert reported["config"]["Env"] == [BUSYBOX_PATH, "APP=one"]


async def test_bare_image_exports_the_base_config_and_one_shot_solve_inherits_too(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    tag = uuid.uuid4().hex[:8]
    _, _, base_config = await pull_manifest(buildkit_registry, "busybox", buildkit_busybox_image.tag)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(
            llb.image(buildkit_busybox_image.ref),
            exports=[
                ImageExport(f"{buildkit_registry.host}/llblib-base/bare:{tag}", push=True, insecure=True)
            ],
        )
        await client.solve(
            llb.image(buildkit_busybox_image.ref).apply(co.entrypoint("/bin/echo")),
            exports=[
                ImageExport(f"{buildkit_registry.host}/llblib-base/entry:{tag}", push=True, insecure=True)
            ],
        )
    _, _, bare = await pull_manifest(buildkit_registry, "llblib-base/bare", tag)
    for key in ("Env", "Cmd"):
        assert bare["config"][key] == base_config["config"][key]
    assert _created_by(bare) == _created_by(base_config)
    _, _, entry = await pull_manifest(buildkit_registry, "llblib-base/entry", tag)
    assert entry["config"]["Env"] == [BUSYBOX_PATH]
    assert entry["config"]["Entrypoint"] == ["/bin/echo"]
    assert "Cmd" not in entry["config"]  # a new ENTRYPOINT resets the base's CMD, as in Docker


async def test_inherit_config_false_exports_only_what_the_helpers_set(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    tag = uuid.uuid4().hex[:8]
    st = llb.image(buildkit_busybox_image.ref, inherit_config=False).apply(co.cmd("x"))
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        await session.do(
            Request.of(
                st,
                exports=[
                    ImageExport(f"{buildkit_registry.host}/llblib-base/plain:{tag}", push=True, insecure=True)
                ],
            )
        )
        assert _resolver_calls(session) == 0  # nothing to resolve, the registry was not asked
    _, _, config = await pull_manifest(buildkit_registry, "llblib-base/plain", tag)
    assert config["config"] == {"Cmd": ["x"]}
    history = _created_by(config)
    assert history[0] == 'CMD ["x"]'
    assert not any(h.startswith("ENV PATH=") for h in history)  # none of the base's records


async def test_an_explicit_export_config_wins_and_skips_resolution(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    tag = uuid.uuid4().hex[:8]
    st = llb.image(buildkit_busybox_image.ref).apply(co.cmd("from-state"))
    explicit = (
        llb.image(buildkit_busybox_image.ref, inherit_config=False).apply(co.cmd("explicit")).image_config
    )
    assert explicit is not None
    ref = f"{buildkit_registry.host}/llblib-base/explicit:{tag}"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        await session.do(
            Request.of(st, exports=[ImageExport(ref, push=True, insecure=True, image_config=explicit)])
        )
        assert _resolver_calls(session) == 0
    _, _, config = await pull_manifest(buildkit_registry, "llblib-base/explicit", tag)
    assert config["config"] == {"Cmd": ["explicit"]}


async def test_oci_tarball_export_carries_the_merged_config(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    dest = tmp_path / "image.tar"
    st = llb.image(buildkit_busybox_image.ref).apply(co.default_dir("/srv"), co.cmd("ls"))
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(st, exports=[OCIExport(dest)])

    def read_config() -> dict[str, Any]:
        with tarfile.open(dest) as tar:

            def blob(digest: str) -> Any:
                member = tar.extractfile("blobs/" + digest.replace(":", "/"))
                assert member is not None
                return json.load(member)

            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            manifest = blob(index["manifests"][0]["digest"])
            config: dict[str, Any] = blob(manifest["config"]["digest"])
            return config

    config = await asyncio.to_thread(read_config)
    assert config["config"]["Env"] == [BUSYBOX_PATH]
    assert config["config"]["WorkingDir"] == "/srv"
    assert config["config"]["Cmd"] == ["ls"]
    assert _created_by(config)[-2:] == ["WORKDIR /srv", 'CMD ["ls"]']


async def test_an_unknown_base_raises_base_image_error_and_exports_nothing(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    tag = uuid.uuid4().hex[:8]
    missing = f"{buildkit_registry.host}/llblib-base/missing:{tag}"
    target = f"{buildkit_registry.host}/llblib-base/never:{tag}"
    st = llb.image(missing).apply(co.cmd("x"))
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        with pytest.raises(llblib_async.BaseImageError) as info:
            await session.do(Request.of(st, exports=[ImageExport(target, push=True, insecure=True)]))
        assert info.value.ref == missing
        assert missing in str(info.value)
        assert isinstance(info.value.__cause__, llblib_async.BuildKitError)
        # The failure is not cached and the session still works: once the image exists it resolves.
        await session.do(
            Request.of(
                llb.image(buildkit_busybox_image.ref),
                exports=[ImageExport(missing, push=True, insecure=True)],
            )
        )
        await session.do(Request.of(st, exports=[ImageExport(target, push=True, insecure=True)]))
        assert _resolver_calls(session) == 3
    _, _, config = await pull_manifest(buildkit_registry, "llblib-base/never", tag)
    assert config["config"]["Env"] == [BUSYBOX_PATH]


async def test_a_failed_base_leaves_no_image_behind(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    tag = uuid.uuid4().hex[:8]
    target = f"{buildkit_registry.host}/llblib-base/orphan:{tag}"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.BaseImageError, match="nope/nothing"):
            await client.solve(
                llb.image(f"{buildkit_registry.host}/nope/nothing:{tag}").mkfile("/f", "x"),
                exports=[ImageExport(target, push=True, insecure=True)],
            )
    status, _, _ = await asyncio.to_thread(
        _get, f"{buildkit_registry.url}/v2/llblib-base/orphan/manifests/{tag}", accept="*/*"
    )
    assert status == 404


async def test_the_image_base_example_runs(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, buildkit_busybox_image: PushedImage
) -> None:
    example = EXAMPLE
    env = {
        **os.environ,
        "BUILDKIT_HOST": buildkit_daemon.address,
        "BASE_IMAGE": buildkit_busybox_image.ref,
        "REGISTRY": buildkit_registry.host,
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"inherited env: ['{BUSYBOX_PATH}', 'GREETING=hello']" in proc.stdout
    assert "inherited cmd: ['cat', '/hello.txt']" in proc.stdout
    assert 'opted-out config: {"Cmd": ["cat", "/hello.txt"]}' in proc.stdout
    assert f"runs on session.image see PATH = {BUSYBOX_PATH.removeprefix('PATH=')}" in proc.stdout
    assert "pushed " in proc.stdout


async def test_the_docs_example_runs(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    text = DOCS.read_text()
    section = text[text.index("## States on `llb.image`") :]
    program = section[section.index("```python\n") + len("```python\n") :]
    program = program[: program.index("```")]
    script = tmp_path / "docs_example.py"
    script.write_text(program)
    env = {**os.environ, "BUILDKIT_HOST": buildkit_daemon.address, "BASE_IMAGE": buildkit_busybox_image.ref}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = json.loads(proc.stdout)
    assert config["config"]["Env"] == [BUSYBOX_PATH, "GREETING=hi"]
    assert config["config"]["Cmd"] == ["cat", "/hi.txt"]


async def test_a_dockerfile_from_a_named_context_on_llb_image_gets_the_base_env(
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    base = llb.image(buildkit_busybox_image.ref).apply(co.add_default_env("FROM_STATE", "yes"))
    st = llb.dockerfile(
        'FROM base\nRUN echo "$PATH $FROM_STATE" > /env.txt\n',
        named_contexts={"base": base},
    )
    out = tmp_path / "out"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        await session.do(Request.of(st, exports=[LocalExport(out)]))
        await session.do(
            Request.of(
                st,
                exports=[
                    ImageExport(f"{buildkit_registry.host}/llblib-base/df:{tag}", push=True, insecure=True)
                ],
            )
        )
        assert _resolver_calls(session) == 1
    assert (out / "env.txt").read_text() == f"{BUSYBOX_PATH.removeprefix('PATH=')} yes\n"
    _, _, config = await pull_manifest(buildkit_registry, "llblib-base/df", tag)
    assert config["config"]["Env"] == [BUSYBOX_PATH, "FROM_STATE=yes"]
    assert config["config"]["Cmd"] == ["/bin/sh"]


@pytest.mark.docker
async def test_moby_export_on_a_docker_daemon_inherits_the_base_config(
    buildkit_dockerd: DockerDaemon, buildkit_busybox_image: PushedImage
) -> None:
    name = f"llblib-image-base:{uuid.uuid4().hex[:12]}"
    st = llb.image(buildkit_busybox_image.ref).apply(co.add_default_env("APP", "moby"), co.cmd("echo"))
    async with (
        llblib_async.connect("docker+" + buildkit_dockerd.host) as client,
        Solver().session(client) as session,
    ):
        await session.do(Request.of(st, exports=[MobyExport(name)]))
        assert _resolver_calls(session) == 1
    config = (await buildkit_dockerd.inspect_image(name))["Config"]
    assert config["Env"] == [BUSYBOX_PATH, "APP=moby"]
    assert config["Cmd"] == ["echo"]
