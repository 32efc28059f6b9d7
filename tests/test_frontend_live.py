"""Frontends as States against the real daemon: ``llb.frontend`` and ``llb.dockerfile``."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from test_exporters_registry import MANIFEST_ACCEPT, _get, pull_manifest
from test_llb_sources_live import _Repo, serve

import llblib_async
from llblib_async import llb
from llblib_async._wire.grpc_errors import TYPE_SOLVE, error_details
from llblib_async.errors import SolveError
from llblib_async.exporters import ImageExport, LocalExport
from llblib_async.llb import config_ops as co
from llblib_async.progress import RecordingProgress
from llblib_async.request import Request
from llblib_async.solver import Solver
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

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
    assert err.__cause__ is not None
    details = error_details(err.__cause__)
    solve = [d.value for d in details if d.type_url == TYPE_SOLVE]
    assert solve
    assert solve[0]["op"]["exec"]["meta"]["args"][-1].startswith("echo out-")


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


QUERY_DOCKERFILE = """\
ARG BASE={base}
FROM $BASE as base
ARG VERSION=1
RUN --mount=type=secret,id=tok,required=true --mount=type=ssh true
FROM base AS final
ENV a b
"""


async def test_outline_targets_and_lint_are_typed(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage
) -> None:
    st = llb.dockerfile(QUERY_DOCKERFILE.format(base=buildkit_busybox_image.ref), filename="q.Dockerfile")
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        out = await llblib_async.outline(session, st)
        stages = await llblib_async.targets(session, st)
        report = await llblib_async.lint(session, st)
        base_outline = await llblib_async.outline(session, st, target="base")
    assert out.target == "final"
    assert [(a.name, a.value) for a in out.args] == [("BASE", buildkit_busybox_image.ref), ("VERSION", "1")]
    assert out.args[1].location is not None
    assert out.args[1].location.line == 3
    assert out.args[1].location.filename == "q.Dockerfile"
    assert [(s.name, s.required) for s in out.secrets] == [("tok", True)]
    assert [s.name for s in out.ssh] == ["default"]
    assert base_outline.target == "base"
    assert [(t.name, t.default, t.base) for t in stages] == [
        ("base", False, "$BASE"),
        ("final", True, "base"),
    ]
    assert [w.rule for w in report.warnings] == ["FromAsCasing", "LegacyKeyValueFormat"]
    assert [w.location.line for w in report.warnings if w.location] == [2, 6]
    assert ">>> ENV a b" in report.warnings[1].location.snippet()  # type: ignore[union-attr]
    assert not report.ok
    with pytest.raises(TypeError, match=r"llb\.dockerfile"):
        await llblib_async.outline(session, llb.scratch())


async def test_session_resolve_gives_the_result_with_its_config(
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    text = (
        f"FROM {buildkit_busybox_image.ref}\nENV APP=one\nWORKDIR /srv\n"
        'RUN echo built > /srv/built\nCMD ["sh"]\n'
    )
    ref = f"{buildkit_registry.host}/llblib-frontend/resolved:v1"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        base = await session.resolve(llb.dockerfile(text))
        assert base.image_config is not None
        assert base.image_config.config.get_env("APP") == "one"
        assert base.working_dir == "/srv"
        app = base.apply(
            co.apply_run("cat built > copied && echo $APP >> copied", shell=True), co.cmd("cat", "copied")
        )
        await session.do(Request.of(app, exports=[ImageExport(ref, push=True, insecure=True)]))
    _, _, config = await pull_manifest(buildkit_registry, "llblib-frontend/resolved", "v1")
    assert config["config"]["Cmd"] == ["cat", "copied"]
    assert "APP=one" in config["config"]["Env"]
    assert config["config"]["WorkingDir"] == "/srv"
    created_by = [h.get("created_by", "") for h in config["history"]]
    assert any("RUN /bin/sh -c echo built" in c for c in created_by), created_by
    assert created_by[-2].startswith("RUN /bin/sh -c 'cat built")


async def test_named_contexts_of_each_kind_and_dockerignore(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "keep.txt").write_text("keep\n")
    (ctx / "secret.key").write_text("no\n")
    (ctx / "sub").mkdir()
    (ctx / "sub" / "x.pyc").write_text("no\n")
    (ctx / ".dockerignore").write_text("# comment\n*.key\n**/*.pyc\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "from-dir.txt").write_text("dir\n")
    (extra / ".dockerignore").write_text("ignored-too\n")
    (extra / "ignored-too").write_text("no\n")
    text = (
        "FROM scratch\n"
        "COPY . /ctx/\n"
        "COPY --from=dirctx / /dir/\n"
        "COPY --from=statectx /made.txt /state/made.txt\n"
        "COPY --from=imgctx /bin/busybox /img/busybox\n"
        "COPY --from=gitctx /README /git/README\n"
        "COPY --from=httpctx /context /http/notes.txt\n"
    )
    repo = _Repo(tmp_path / "repo")
    out = tmp_path / "out"
    with serve({"/notes.txt": b"over http\n"}, git_root=repo.root) as server:
        st = llb.dockerfile(
            text,
            context=ctx,
            named_contexts={
                "dirctx": extra,
                "statectx": llb.scratch().mkfile("/made.txt", "state\n"),
                "imgctx": f"docker-image://{buildkit_busybox_image.ref}",
                "gitctx": f"{server.url}/git/repo.git#v1",
                "httpctx": f"{server.url}/notes.txt",
            },
        )
        async with llblib_async.connect(buildkit_daemon.address) as client:
            await client.solve(st, exports=[LocalExport(out)])
    assert (out / "git" / "README").read_text() == "v1\n"
    assert (out / "http" / "notes.txt").read_text() == "over http\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "ctx/.dockerignore",
        "ctx/keep.txt",
        "dir/.dockerignore",
        "dir/from-dir.txt",
        "git/README",
        "http/notes.txt",
        "img/busybox",
        "state/made.txt",
    ]


async def test_bad_dockerfile_arguments_raise_typed_errors(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text("FROM scratch\n")
    with pytest.raises(llblib_async.DockerfileError, match="Path"):
        llb.dockerfile(str(df))
    with pytest.raises(llblib_async.DockerfileError, match="scheme"):
        llb.dockerfile("FROM scratch\n", named_contexts={"x": "busybox:latest"})
    with pytest.raises(llblib_async.DockerfileError, match="filename"):
        llb.dockerfile("FROM scratch\n", filename="../Dockerfile")
    with pytest.raises(llblib_async.LocalDirError):
        llb.dockerfile("FROM scratch\n", context=tmp_path / "missing")
    with pytest.raises(llblib_async.DockerfileError, match="build arg"):
        llb.dockerfile("FROM scratch\n", build_args={"A": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="frontend source"):
        llb.frontend("")
    with pytest.raises(llb.UnresolvedLazyStateError, match="session"):
        llb.marshal(llb.dockerfile("FROM scratch\n").mkdir("/x"))


async def test_gateway_frontend_from_the_loopback_registry_builds_a_dockerfile(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_dockerfile_frontend_image: PushedImage,
    tmp_path: Path,
) -> None:
    text = (
        f"FROM {buildkit_busybox_image.ref}\nARG WHO\n"
        'RUN echo "built by the $WHO frontend" > /who\nCMD ["cat", "/who"]\n'
    )
    out = tmp_path / "out"
    by_option = llb.dockerfile(
        text, build_args={"WHO": "gateway"}, frontend=buildkit_dockerfile_frontend_image.ref
    )
    # The same, spelt as a bare frontend State with the Dockerfile as an input.
    by_hand = llb.frontend(
        buildkit_dockerfile_frontend_image.ref,
        inputs={
            "dockerfile": llb.scratch().mkfile("/Dockerfile", text),
            "context": llb.scratch().mkdir("/ctx"),
        },
        opts={"build-arg:WHO": "hand-made"},
    )
    progress = RecordingProgress()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(by_option, exports=[LocalExport(out / "option")], progress=progress)
        await client.solve(by_hand.file(llb.mkfile("/extra", "x")), exports=[LocalExport(out / "hand")])
    assert (out / "option" / "who").read_text() == "built by the gateway frontend\n"
    assert (out / "hand" / "who").read_text() == "built by the hand-made frontend\n"
    assert (out / "hand" / "extra").read_text() == "x"
    config = json.loads(result.exporter_response["llblib.containerimage.config"])
    assert config["config"]["Cmd"] == ["cat", "/who"]
    names = {v.name for u in progress.updates for v in u.vertices}
    assert any(buildkit_dockerfile_frontend_image.repository in n for n in names), names


async def test_multi_platform_result_carries_a_config_per_platform(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry, tmp_path: Path
) -> None:
    text = 'FROM scratch\nARG TARGETARCH\nLABEL arch=$TARGETARCH\nCOPY --from=files /f /f\nCMD ["/nothing"]\n'
    st = llb.dockerfile(
        text,
        platforms=["linux/amd64", "linux/386"],
        named_contexts={"files": llb.scratch().mkfile("/f", "f\n")},
    )
    tag = uuid.uuid4().hex[:8]
    ref = f"{buildkit_registry.host}/llblib-frontend/multi:{tag}"
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        await session.do(Request.of(st, exports=[ImageExport(ref, push=True, insecure=True)]))
        for_386 = await session.resolve(st, platform="linux/386")
        for_amd64 = await session.resolve(st, platform="linux/amd64")
    status, _, body = await asyncio.to_thread(
        _get, f"{buildkit_registry.url}/v2/llblib-frontend/multi/manifests/{tag}", accept=MANIFEST_ACCEPT
    )
    assert status == 200
    index = json.loads(body)
    archs = {}
    for manifest in index["manifests"]:
        _, _, config = await pull_manifest(buildkit_registry, "llblib-frontend/multi", manifest["digest"])
        archs[config["architecture"]] = config["config"]["Labels"]["arch"]
    assert archs == {"amd64": "amd64", "386": "386"}
    assert for_386.image_config is not None
    assert for_386.image_config.platform.architecture == "386"
    assert for_386.image_config.config.label_map["arch"] == "386"
    assert for_amd64.image_config is not None
    assert for_amd64.image_config.config.label_map["arch"] == "amd64"


async def test_dockerfile_path_with_its_own_ignore_file(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (ctx / name).write_text(name)
    (ctx / ".dockerignore").write_text("a.txt\n")  # not used: the Dockerfile has its own
    build = tmp_path / "build"
    build.mkdir()
    (build / "app.Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    (build / "app.Dockerfile.dockerignore").write_text("b.txt\n")
    (build / "bad.Dockerfile").write_text(f"FROM {buildkit_busybox_image.ref}\nRUN exit 4\n")
    out = tmp_path / "out"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(llb.dockerfile(build / "app.Dockerfile", context=ctx), exports=[LocalExport(out)])
        with pytest.raises(SolveError) as info:
            await client.solve(llb.dockerfile(build / "bad.Dockerfile", context=ctx))
    assert sorted(p.name for p in (out / "ctx").iterdir()) == [".dockerignore", "a.txt", "c.txt"]
    assert info.value.exit_code == 4
    assert [(s.filename, s.line) for s in info.value.sources] == [("bad.Dockerfile", 2)]
