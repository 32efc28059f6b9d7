"""Rough edges of the API, against the real daemon: late attachables, typed export
results, the content-tracking defaults of ``llb.local`` and ``Solver.local``."""

from __future__ import annotations

import asyncio
import base64
import json
import tarfile
import time
import urllib.request
from pathlib import Path

import grpclib.const
import pytest

import llblib_async
from llblib_async import LateAttachableError, Result, Solver, llb
from llblib_async._pb import pb
from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async.llb import config_ops as co
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.docker_registry import Registry

pytestmark = pytest.mark.asyncio(loop_scope="session")


class _Nothing:
    """An attachable serving no method."""

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {}


async def test_add_attachable_while_a_session_is_open_raises_naming_it(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    early, late = _Nothing(), _Nothing()
    solver.add_attachable(early)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        async with solver.session(client) as session:
            with pytest.raises(LateAttachableError) as caught:
                solver.add_attachable(late)
            assert caught.value.attachable is late
            assert repr(late) in str(caught.value)
            assert isinstance(caught.value, RuntimeError)
            # a late Secrets is named without its values
            secret = f"hunter-{time.time_ns()}"
            late_secrets = llblib_async.Secrets({"tok": llblib_async.Secret.from_bytes(secret.encode())})
            with pytest.raises(LateAttachableError, match="Secrets") as caught_secrets:
                solver.add_attachable(late_secrets)
            assert secret not in str(caught_secrets.value)
            # nothing was registered, and the session still works (locals still may be added)
            assert solver.attachables == (early,)
            (tmp_path / "ctx").mkdir()
            (tmp_path / "ctx" / "f").write_text("late local")
            seen: list[bytes] = []

            async def read(result: Result) -> None:
                seen.append(await result.read_file("/f"))

            state = llb.scratch().copy(solver.local(tmp_path / "ctx"), "/", "/")
            await asyncio.wait_for(session.do(solver.build(state, on_result=read)), 60)
            assert seen == [b"late local"]
        # once the session closed, a new one serves it
        solver.add_attachable(late)
        assert len(solver.attachables) == 2
        assert solver.attachables[-1] is late
        async with solver.session(client) as session:
            await asyncio.wait_for(
                session.do(solver.build(llb.scratch().mkfile("/x", str(time.time_ns())))), 60
            )


# --------------------------------------------------------------------------- typed export results


def _image_state(stamp: int) -> llb.State:
    return (
        llb.scratch()
        .with_platform(llb.default_platform())
        .mkfile("/stamp", str(stamp))
        .apply(co.add_label("stamp", str(stamp)))
    )


def _manifest_of_registry(registry: Registry, repo: str, tag: str) -> tuple[str, bytes]:
    req = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers["Docker-Content-Digest"], resp.read()


async def test_a_pushed_image_has_typed_digest_descriptor_and_pushed_names(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    stamp = time.time_ns()
    repo = f"typed/push{stamp}"
    names = [f"{buildkit_registry.host}/{repo}:a", f"{buildkit_registry.host}/{repo}:b"]
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(
            client.solve(
                _image_state(stamp), exports=[llblib_async.ImageExport(names, push=True, insecure=True)]
            ),
            120,
        )
    pushed_digest, manifest = await asyncio.to_thread(_manifest_of_registry, buildkit_registry, repo, "b")
    assert result.image_digest == pushed_digest
    assert result.pushed_names == tuple(names)
    assert result.image_names == tuple(names)
    descriptor = result.descriptor
    assert descriptor is not None
    assert descriptor.digest == pushed_digest
    assert descriptor.size == len(manifest)
    assert descriptor.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert descriptor.platform == llb.default_platform().os + "/" + llb.default_platform().architecture
    assert result.config_digest == json.loads(manifest)["config"]["digest"]
    assert result.image_config is not None
    assert result.image_config.config.label_map == {"stamp": str(stamp)}
    assert result.outputs == ()
    # the raw map is kept
    assert result.exporter_response["containerimage.digest"] == pushed_digest


@pytest.mark.parametrize("kind", ["oci", "docker"])
async def test_an_image_tarball_has_typed_digest_and_descriptor(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path, kind: str
) -> None:
    stamp = time.time_ns()
    dest = tmp_path / f"{kind}.tar"
    export = (llblib_async.OCIExport if kind == "oci" else llblib_async.DockerExport)(dest, name="x/y:1")
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(client.solve(_image_state(stamp), exports=[export]), 120)
    with tarfile.open(dest) as tar:
        f = tar.extractfile("index.json")
        assert f is not None
        [entry] = json.load(f)["manifests"]
        manifest = tar.extractfile("blobs/sha256/" + entry["digest"].removeprefix("sha256:"))
        assert manifest is not None
        config_digest = json.load(manifest)["config"]["digest"]
    assert result.image_digest == entry["digest"]
    descriptor = result.descriptor
    assert descriptor is not None
    assert (descriptor.digest, descriptor.size, descriptor.media_type) == (
        entry["digest"],
        entry["size"],
        entry["mediaType"],
    )
    assert "org.opencontainers.image.created" in descriptor.annotations
    assert result.config_digest == config_digest
    assert result.image_names == ("docker.io/x/y:1",)
    assert result.pushed_names == ()
    assert result.outputs == (dest,)


async def test_a_local_export_has_no_image_fields_and_names_its_output(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    out, tar = tmp_path / "out", tmp_path / "out.tar"
    exports: list[llblib_async.LocalExport | llblib_async.TarExport] = [
        llblib_async.LocalExport(out),
        llblib_async.TarExport(tar),
    ]
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await asyncio.wait_for(client.solve(llb.scratch().mkfile("/f", "x"), exports=exports), 60)
    assert (out / "f").read_text() == "x"
    assert result.outputs == (out, tar)
    assert result.image_digest is None
    assert result.config_digest is None
    assert result.descriptor is None
    assert result.image_names == ()
    assert result.pushed_names == ()
    assert result.image_config is None
    assert dict(result.exporter_response) == {}


async def test_a_bad_descriptor_raises_export_error_naming_it() -> None:
    result = llblib_async.SolveResult(ref="r", exporter_response={"containerimage.descriptor": "%%%"})
    with pytest.raises(llblib_async.ExportError, match="%%%"):
        _ = result.descriptor
    not_one = base64.b64encode(b'{"size": 1}').decode()
    result = llblib_async.SolveResult(ref="r", exporter_response={"containerimage.descriptor": not_one})
    with pytest.raises(llblib_async.ExportError, match="not an OCI descriptor"):
        _ = result.descriptor


# --------------------------------------------------------------------------- content tracking defaults


def _local_attrs(state: llb.State) -> dict[str, str]:
    [source] = [op.source for op in map(pb.Op.parse, llb.marshal(state).ops[:-1]) if op.source is not None]
    return dict(source.attrs)


async def test_llb_local_does_not_track_content_and_solver_local_does(tmp_path: Path) -> None:
    """The documented defaults: ``llb.local`` makes Go ``llb.Local``'s op (no content in
    it), ``Solver.local`` puts the directory's content digest in (Go llblib's ``Local``)."""
    (tmp_path / "f").write_text("one")
    plain = _local_attrs(llb.local(tmp_path, name="ctx"))
    tracked = _local_attrs(Solver().local(tmp_path, name="ctx"))
    digest = llb.local_content_digest(tmp_path)
    assert plain["local.unique"] == llb.default_local_unique_id(tmp_path)
    assert "local.excludepatterns" not in plain
    assert tracked["local.unique"] == digest
    assert digest.removeprefix("sha256:") in tracked["local.excludepatterns"]
    # either default can be overridden, and then the ops are the same
    assert _local_attrs(llb.local(tmp_path, name="ctx", track_content=True)) == tracked
    assert _local_attrs(Solver().local(tmp_path, name="ctx", track_content=False)) == plain


# --------------------------------------------------------------------------- build history


async def _history_refs(client: llblib_async.Client, ref: str) -> list[str]:
    stub = control.ControlStub(client.connection.channel)
    refs = []
    async for event in stub.listen_build_history(control.BuildHistoryRequest(ref=ref, early_exit=True)):
        if event.record is not None:
            refs.append(event.record.ref)
    return refs


async def test_record_history_false_keeps_a_build_out_of_the_daemon_history(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    stamp = str(time.time_ns())
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        recorded = await asyncio.wait_for(
            session.do(
                solver.build(
                    llb.scratch().mkfile("/a", stamp), exports=[llblib_async.LocalExport(tmp_path / "a")]
                )
            ),
            60,
        )
        internal = await asyncio.wait_for(
            session.do(
                solver.build(
                    llb.scratch().mkfile("/b", stamp),
                    exports=[llblib_async.LocalExport(tmp_path / "b")],
                    record_history=False,
                )
            ),
            60,
        )
        assert await _history_refs(client, recorded.ref) == [recorded.ref]
        assert await _history_refs(client, internal.ref) == []
    assert (tmp_path / "a" / "a").read_text() == stamp
    assert (tmp_path / "b" / "b").read_text() == stamp
