"""``Session.to_yaml``: the graphs of requests as one YAML sequence, marshaled in a live session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_llb_exec_live import _rootfs

import llblib_async
from llblib_async import Solver, llb
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_requests_of_states_and_definitions_render_as_llb_to_yaml_of_them(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    base = _rootfs(buildkit_busybox_rootfs)
    app = base.run("echo app > /app", shell=True, name="app").root
    tool = base.run(["touch", "/tool"]).root.file(llb.mkdir("/etc/tool"))
    other = llb.marshal(llb.scratch().file(llb.mkfile("/motd", "hi")))
    solver = Solver()
    requests = [solver.build(app, label="app"), solver.build(tool), solver.build(other)]
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        text = await session.to_yaml(*requests)
        redacted = await session.to_yaml(*requests, redact=llb.graph_yaml.MACHINE_DEPENDENT_KEYS)
        assert await session.to_yaml() == llb.to_yaml()
    assert text == llb.to_yaml(app, tool, other)
    assert redacted == llb.to_yaml(app, tool, other, redact=llb.graph_yaml.MACHINE_DEPENDENT_KEYS)
    first, second, third = yaml.safe_load(text)
    assert "# app\n" in text
    # One sequence: the base both requests run on is written once and aliased.
    assert first["mounts"][0]["input"] is second["actions"][0]["input"]["mounts"][0]["input"]
    assert third["actions"][0]["path"] == "/motd"


async def test_a_container_request_renders_as_scratch(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    base = _rootfs(buildkit_busybox_rootfs)
    solver = Solver()
    shell = solver.container(base, ["sh", "-c", "true"])
    file = base.file(llb.mkfile("/x", "x"))
    built = solver.build(file)
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        alone = await session.to_yaml(shell)
        mixed = await session.to_yaml(shell, built, shell)
    assert yaml.safe_load(alone) == [{"type": "SOURCE", "source": "scratch"}]
    assert mixed == llb.to_yaml(llb.scratch(), file, llb.scratch())
    assert mixed.startswith("- &scratch")


async def test_a_frontend_state_is_resolved_through_the_session(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage
) -> None:
    text = f"FROM {buildkit_busybox_image.ref}\nRUN echo from-dockerfile > /f\n"
    st = llb.dockerfile(text)
    derived = st.file(llb.mkfile("/extra", "x"))
    # Outside a session the frontend cannot run, so there is no graph to show.
    with pytest.raises(llb.UnresolvedLazyStateError):
        llb.to_yaml(derived)
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        dumped = await session.to_yaml(solver.build(st), solver.build(derived))
        resolved = await session.resolve(st)
    assert dumped == llb.to_yaml(resolved, resolved.file(llb.mkfile("/extra", "x")))
    result, extra = yaml.safe_load(dumped)
    assert result["type"] == "EXEC"
    assert result["args"] == ["/bin/sh", "-c", "echo from-dockerfile > /f"]
    # The frontend pinned the base to the digest it resolved.
    assert result["mounts"][0]["input"]["source"].startswith(
        f"docker-image://{buildkit_busybox_image.ref}@sha256:"
    )
    assert extra["actions"][0]["input"] is result["mounts"][0]  # the alias names the root output


async def test_arguments_must_be_requests(buildkit_daemon: BuildkitDaemon) -> None:
    async with llblib_async.connect(buildkit_daemon.address) as client, Solver().session(client) as session:
        with pytest.raises(TypeError, match=r"takes Requests .* not State"):
            await session.to_yaml(llb.scratch())  # type: ignore[arg-type]
