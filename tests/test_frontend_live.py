"""Frontends as States against the real daemon: ``llb.frontend`` and ``llb.dockerfile``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.exporters import ImageExport, LocalExport
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

from test_exporters_registry import pull_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_dockerfile_from_image_pushes_frontend_config(
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "ignored.txt").write_text("nope\n")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    text = (
        f"FROM {buildkit_busybox_image.ref}\n"
        "ARG GREETING=default\n"
        "COPY . /ctx/\n"
        'RUN echo "$GREETING" > /greeting && ls /ctx > /ls\n'
        'CMD ["cat", "/greeting"]\n'
    )
    st = llb.dockerfile(text, context=ctx, build_args={"GREETING": "hi"}, labels={"org.example": "x"})
    ref = f"{buildkit_registry.host}/llblib-frontend/df:{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(st, exports=[ImageExport(ref, push=True, insecure=True)])
        await client.solve(st.run("cat /greeting /ls > /x", shell=True).root, exports=[])
        derived = st.file(llb.mkfile("/extra", "x"))
        await client.solve(derived, exports=[LocalExport(out)])
    _, _, config = await pull_manifest(
        buildkit_registry, ref.split("/", 1)[1].split(":")[0], ref.rsplit(":", 1)[1]
    )
    assert config["config"]["Cmd"] == ["cat", "/greeting"]
    assert config["config"]["Labels"] == {"org.example": "x"}
    assert any("PATH=" in e for e in config["config"]["Env"])
    assert "llblib.containerimage.config" in result.exporter_response
    assert (out / "greeting").read_text() == "hi\n"
    assert (out / "ls").read_text() == "hello.txt\n"
    assert (out / "extra").read_text() == "x"
