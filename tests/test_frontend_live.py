"""Frontends as States against the real daemon: ``llb.frontend`` and ``llb.dockerfile``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async._wire.grpc_errors import TYPE_SOLVE, error_details
from llblib_async.errors import SolveError
from llblib_async.exporters import ImageExport, LocalExport
from llblib_async.progress import RecordingProgress
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


async def test_syntax_error_names_the_line(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage
) -> None:
    text = f"FROM {buildkit_busybox_image.ref}\nRUN echo hi\nRUNN false\nRUN true\n"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(SolveError) as info:
            await client.solve(llb.dockerfile(text, filename="app.Dockerfile"))
    err = info.value
    assert err.frontend == "dockerfile.v0"
    assert [(s.filename, s.line, s.language) for s in err.sources] == [("app.Dockerfile", 3, "Dockerfile")]
    assert err.stack  # the daemon's Go frames, for bug reports
    text_of_error = str(err)
    assert "unknown instruction: RUNN" in text_of_error
    assert "app.Dockerfile:3\n" in text_of_error
    assert " 3 | >>> RUNN false" in text_of_error
    assert " 2 |     RUN echo hi" in text_of_error


@pytest.mark.parametrize("derived", [False, True], ids=["frontend-result", "state-built-on-it"])
async def test_failing_run_names_its_lines(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, derived: bool
) -> None:
    text = (
        f"FROM {buildkit_busybox_image.ref}\nRUN echo hi\nRUN echo out-$((40+2)) && \\\n  exit 3\nRUN true\n"
    )
    st = llb.dockerfile(text)
    if derived:  # the frontend's graph is imported with its source map, so the error still points at it
        st = st.file(llb.mkfile("/x", "y"))
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(SolveError) as info:
            await client.solve(st, evaluate=True)
    err = info.value
    assert err.exit_code == 3
    assert err.vertex_name == "[3/4] RUN echo out-$((40+2)) &&   exit 3"
    assert [s.filename for s in err.sources] == ["Dockerfile"]
    assert {n for r in err.sources[0].ranges for n in range(r[0], r[2] + 1)} == {3, 4}
    assert "out-42" in err.logs
    shown = str(err)
    assert "Dockerfile:3-4\n" in shown
    assert " 3 | >>> RUN echo out-$((40+2)) && \\" in shown
    assert " 4 | >>>   exit 3" in shown
    assert " 5 |     RUN true" in shown
    # The errdefs details stay reachable for OnError: the failed exec op and its mounts.
    details = error_details(err.__cause__)
    solve = [d.value for d in details if d.type_url == TYPE_SOLVE]
    assert solve and solve[0]["op"]["exec"]["meta"]["args"][-1].startswith("echo out-")


async def test_frontend_warnings_reach_progress_with_locations(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage
) -> None:
    # "FROM ... as base": the lint rule FromAsCasing warns about the lower-case AS.
    text = f"FROM {buildkit_busybox_image.ref} as base\nRUN true\n"
    progress = RecordingProgress()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(llb.dockerfile(text), progress=progress, evaluate=True)
    warnings = [w for u in progress.updates for w in u.warnings]
    assert warnings, "the frontend's lint warning did not reach the progress stream"
    casing = [w for w in warnings if "FromAsCasing" in w.short or "casing" in w.short.lower()]
    assert casing, [w.short for w in warnings]
    assert casing[0].sources[0].filename == "Dockerfile"
    assert casing[0].sources[0].line == 1
