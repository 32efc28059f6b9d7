"""The same Dockerfile built by llblib-async and by Go ``buildctl`` on the same daemon gives the same image.

A multi-stage Dockerfile with ``RUN --mount=type=cache``, ``--mount=type=secret`` and
``--mount=type=ssh``, ``COPY --from`` named contexts of each kind buildctl can express
(a local directory, an image, a git repository and an http URL), build args and a target
is pushed by both to the loopback registry. The pushed configs are equal once the
timestamps are removed, and so are the layer digests (timestamps in the layers are
rewritten to ``SOURCE_DATE_EPOCH`` on both sides, so re-run steps give the same bytes).
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_exporters_registry import pull_manifest
from test_llb_sources_live import _Repo, serve
from test_ssh_sockets import ssh_agent  # noqa: F401  (a fixture)

import llblib_async
from llblib_async import Secret, Secrets, SSHAgent, llb
from llblib_async.exporters import ImageExport
from llblib_async.request import Request
from llblib_async.solver import Solver
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.binaries import BuildkitBinaries
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

EPOCH = "1700000000"

DOCKERFILE = """\
FROM {base} AS build
ARG VERSION=0
RUN --mount=type=cache,target=/cache,id=llblib-compare echo "v$VERSION" > /cache/v && cp /cache/v /version
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-size
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo ssh-ok > /ssh
COPY --from=dirctx /from-dir.txt /dir.txt
COPY --from=gitctx /README /git-readme
COPY --from=httpctx /context /http.txt
COPY --from=imgctx /bin/busybox /img-busybox

FROM {base} AS final
COPY --from=build /version /secret-size /ssh /dir.txt /git-readme /http.txt /out/
COPY . /ctx/
ENV APP=compare
LABEL org.example.built-by=both
WORKDIR /out
CMD ["cat", "/out/version"]

FROM final AS never
RUN false
"""


def _without_timestamps(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out.pop("created", None)
    for record in out.get("history", ()):
        record.pop("created", None)
    return out


async def _buildctl(
    binaries: BuildkitBinaries, daemon: BuildkitDaemon, argv: list[str], workdir: Path
) -> None:
    log = workdir / "buildctl.log"
    cmd = [str(binaries.buildctl), "--addr", daemon.address, "build", *argv, "--progress", "plain"]
    proc = await asyncio.to_thread(
        subprocess.run, cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, timeout=300, check=False
    )
    assert proc.returncode == 0, log.read_text()[-4000:]


async def test_pushed_config_and_layers_equal_buildctl_s(
    buildkit_binaries: BuildkitBinaries,
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    ssh_agent: tuple[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    sock, _ = ssh_agent
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    (ctx / "skip.log").write_text("skip\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "from-dir.txt").write_text("dir\n")
    secret_file = tmp_path / "tok"
    secret_file.write_text("s3cr3t-value")
    dockerfile_dir = tmp_path / "dockerfile"
    dockerfile_dir.mkdir()
    text = DOCKERFILE.format(base=buildkit_busybox_image.ref)
    (dockerfile_dir / "Dockerfile").write_text(text)
    repo = _Repo(tmp_path / "repo")
    tag = uuid.uuid4().hex[:8]
    ours = f"{buildkit_registry.host}/llblib-compare/ours:{tag}"
    theirs = f"{buildkit_registry.host}/llblib-compare/buildctl:{tag}"
    build_args = {"VERSION": "7", "SOURCE_DATE_EPOCH": EPOCH}
    with serve({"/notes.txt": b"over http\n"}, git_root=repo.root) as server:
        remote = {
            "gitctx": f"{server.url}/git/repo.git#v1",
            "httpctx": f"{server.url}/notes.txt",
            "imgctx": f"docker-image://{buildkit_busybox_image.ref}",
        }
        st = llb.dockerfile(
            text,
            context=ctx,
            build_args=build_args,
            target="final",
            named_contexts={"dirctx": extra, **remote},
        )
        solver = Solver()
        solver.add_attachable(Secrets({"tok": Secret.from_file(secret_file)}))
        solver.add_attachable(SSHAgent(sock))
        async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
            await session.do(
                Request.of(
                    st,
                    exports=[
                        ImageExport(ours, push=True, insecure=True, extra_attrs={"rewrite-timestamp": "true"})
                    ],
                )
            )
        argv = [
            "--frontend", "dockerfile.v0",
            "--local", f"context={ctx}",
            "--local", f"dockerfile={dockerfile_dir}",
            "--local", f"dirctx={extra}",
            "--opt", "context:dirctx=local:dirctx",
            *[a for name, url in remote.items() for a in ("--opt", f"context:{name}={url}")],
            *[a for k, v in build_args.items() for a in ("--opt", f"build-arg:{k}={v}")],
            "--opt", "target=final",
            "--secret", f"id=tok,src={secret_file}",
            "--ssh", f"default={sock}",
            "--output", f"type=image,name={theirs},push=true,registry.insecure=true,rewrite-timestamp=true",
        ]  # fmt: skip
        await _buildctl(buildkit_binaries, buildkit_daemon, argv, tmp_path)
    _, our_manifest, our_config = await pull_manifest(buildkit_registry, "llblib-compare/ours", tag)
    _, their_manifest, their_config = await pull_manifest(buildkit_registry, "llblib-compare/buildctl", tag)
    assert _without_timestamps(our_config) == _without_timestamps(their_config)
    assert [layer["digest"] for layer in our_manifest["layers"]] == [
        layer["digest"] for layer in their_manifest["layers"]
    ]
    # What the build saw, as a sanity check of the comparison itself.
    assert our_config["config"]["Cmd"] == ["cat", "/out/version"]
    assert "APP=compare" in our_config["config"]["Env"]
    assert os.environ.get("SSH_AUTH_SOCK") != sock  # the agent is private to the test
