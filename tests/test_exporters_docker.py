"""Image tarballs (``docker``/``oci`` exporters) and the Docker daemon's ``moby`` exporter.

* :class:`DockerExport` writes a ``docker load``-able tarball (``manifest.json`` with
  ``RepoTags``) to a file; it is loaded into the ``buildkit_dockerd`` fixture with the docker CLI
  and ``docker image inspect`` shows the State's config (Env, Labels, Cmd...).
* :class:`OCIExport` writes an OCI layout tarball (``oci-layout``, ``index.json``), also
  streamed into an async sink (:class:`StreamTarget`) with the exporter metadata;
  :class:`OCILayoutExport` fills an OCI layout directory through the session content store.
* On the Docker daemon (20.10, graphdriver) :class:`MobyExport` loads the result into
  Docker's image store, and the ``image`` exporter, which it lacks, raises
  :class:`UnsupportedExporterError`.  20.10's ``moby`` exporter reads the image config
  only from the build result's metadata: ``Session.do`` puts it there
  (``tests/test_docker_session.py``) and ``client.solve`` runs such a request as a gateway
  build that does too; ``docker image inspect`` shows the State's config.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import llblib_async
from llblib_async import llb
from llblib_async._pipeline.cache_plan import plan_cache
from llblib_async.attachables.filesend import ByteSink, StreamTarget
from llblib_async.errors import UnsupportedExporterError
from llblib_async.exporters import (
    DockerExport,
    ImageExport,
    MobyExport,
    OCIExport,
    OCILayoutExport,
)
from llblib_async.llb import config_ops as co
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.dockerd import DockerDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOLVE_TIMEOUT = 180.0


def _app_state(marker: str) -> llb.State:
    return (
        llb.scratch()
        .with_platform(llb.default_platform())
        .mkfile("/hello", f"hello {marker}\n")
        .apply(
            co.add_default_env("GREETING", "hello"),
            co.add_label("org.example.marker", marker),
            co.default_dir("/srv"),
            co.cmd("/hello"),
        )
    )


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: f.read() for m in tar.getmembers() if m.isfile() and (f := tar.extractfile(m)) is not None
        }


def _check_config(inspected: Mapping[str, Any], marker: str) -> None:
    config = inspected["Config"]
    assert "GREETING=hello" in config["Env"]
    assert config["Labels"] == {"org.example.marker": marker}
    assert config["Cmd"] == ["/hello"]
    assert config["WorkingDir"] == "/srv"


async def test_docker_tarball_loads_into_docker(
    buildkit_daemon: BuildkitDaemon, buildkit_dockerd: DockerDaemon, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    name = f"llblib-tarball:{marker[:12]}"
    dest = tmp_path / "image.tar"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(
            client.solve(_app_state(marker), exports=[DockerExport(dest, name=name)]), SOLVE_TIMEOUT
        )
    members = await asyncio.to_thread(_members, dest)
    manifest = json.loads(members["manifest.json"])
    assert len(manifest) == 1
    assert manifest[0]["RepoTags"] == [f"docker.io/library/{name}"] or manifest[0]["RepoTags"] == [name]
    assert "oci-layout" in members
    assert "index.json" in members
    config_digest = result.exporter_response["containerimage.config.digest"]
    assert manifest[0]["Config"] == "blobs/sha256/" + config_digest.removeprefix("sha256:")

    out = (await buildkit_dockerd.cli("load", "-i", str(dest))).decode()
    assert name in out
    inspected = await buildkit_dockerd.inspect_image(name)
    assert inspected["Id"] == config_digest
    _check_config(inspected, marker)


async def test_oci_tarball_to_file_and_stream(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    dest = tmp_path / "oci.tar"
    chunks: list[bytes] = []
    seen: list[Mapping[str, str]] = []

    class Sink:
        async def send(self, item: bytes) -> None:
            chunks.append(item)

        async def aclose(self) -> None:
            pass

    async def open_sink(metadata: Mapping[str, str]) -> ByteSink | None:
        seen.append(dict(metadata))
        return Sink()

    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(
            client.solve(
                _app_state(marker),
                exports=[
                    OCIExport(dest, name="example.com/llblib/oci:v1", oci_mediatypes=True),
                    OCIExport(StreamTarget(open_sink)),
                ],
            ),
            SOLVE_TIMEOUT,
        )
    members = await asyncio.to_thread(_members, dest)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(members["index.json"])
    [descriptor] = index["manifests"]
    assert descriptor["digest"] == result.exporter_response["containerimage.digest"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    manifest = json.loads(members["blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")])
    config = json.loads(members["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["config"]["Labels"] == {"org.example.marker": marker}
    assert "manifest.json" not in members  # OCI layout only, not docker-load format

    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as streamed:
        assert {"oci-layout", "index.json"} <= set(streamed.getnames())
    assert seen
    assert seen[0].get("containerimage.digest") == descriptor["digest"]


async def test_oci_layout_directory_through_the_session_content_store(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    layout = tmp_path / "layout"
    names = ["example.com/llblib/layout:v1", "example.com/llblib/layout:v2"]
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(
            client.solve(_app_state(marker), exports=[OCILayoutExport(layout, name=names)]), SOLVE_TIMEOUT
        )
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == names
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["v1", "v2"]
    digest = result.exporter_response["containerimage.digest"]
    assert {m["digest"] for m in index["manifests"]} == {digest}

    def blob(d: str) -> bytes:
        data = (layout / "blobs" / "sha256" / d.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d
        return data

    manifest = json.loads(blob(digest))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["config"]["Labels"] == {"org.example.marker": marker}
    for layer in manifest["layers"]:
        blob(layer["digest"])
    assert not any((layout / "ingest").iterdir())


@pytest.mark.docker
async def test_moby_exporter_loads_into_docker(buildkit_dockerd: DockerDaemon) -> None:
    marker = uuid.uuid4().hex
    name = f"llblib-moby:{marker[:12]}"
    async with llblib_async.connect("docker+" + buildkit_dockerd.host) as client:
        assert client.is_moby
        await asyncio.wait_for(client.solve(_app_state(marker), exports=[MobyExport(name)]), SOLVE_TIMEOUT)
    inspected = await buildkit_dockerd.inspect_image(name)
    assert inspected["RepoTags"] == [name]
    assert len(inspected["RootFS"]["Layers"]) == 1
    # Docker 20.10's moby exporter reads the config only from the result metadata;
    # client.solve runs such a request as a gateway build that sets it.
    assert inspected["Config"]["Env"][-1] == "GREETING=hello"
    assert inspected["Config"]["Labels"] == {"org.example.marker": marker}
    assert inspected["Config"]["Cmd"] == ["/hello"]
    assert inspected["Config"]["WorkingDir"] == "/srv"
    container = (await buildkit_dockerd.cli("create", name, "/hello")).decode().strip()
    try:
        archive = await buildkit_dockerd.cli("cp", f"{container}:/hello", "-")
    finally:
        await buildkit_dockerd.cli("rm", container)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("hello")
        assert member is not None
        assert member.read() == f"hello {marker}\n".encode()


@pytest.mark.docker
async def test_image_exporter_on_classic_docker_is_a_typed_error(buildkit_dockerd: DockerDaemon) -> None:
    async with llblib_async.connect("docker+" + buildkit_dockerd.host) as client:
        with pytest.raises(UnsupportedExporterError) as err:
            await asyncio.wait_for(
                client.solve(
                    _app_state(uuid.uuid4().hex),
                    exports=[ImageExport("127.0.0.1:1/never:v1", push=True, insecure=True)],
                ),
                SOLVE_TIMEOUT,
            )
    assert err.value.exporter == "image"
    assert isinstance(err.value, llblib_async.ExportError)


async def test_tarball_export_values(tmp_path: Path) -> None:
    export = DockerExport("out.tar", name=["a:1", "b:2"], compression="gzip", source_date_epoch=0)
    assert export.dest == Path("out.tar")
    assert dict(export.attrs) == {"name": "a:1,b:2", "compression": "gzip", "source-date-epoch": "0"}
    assert OCIExport("o.tar").names == ()
    assert dict(MobyExport("x:y", image_config=b"{}").attrs) == {"name": "x:y", "containerimage.config": "{}"}
    assert dict(OCILayoutExport("dir", name="r/a:1").attrs) == {"tar": "false", "name": "r/a:1"}
    with pytest.raises(ValueError, match="one OCILayoutExport"):
        await plan_cache((), (), [OCILayoutExport(tmp_path / "a"), OCILayoutExport(tmp_path / "b")])
