"""Cache export/import on solve requests (``SolveRequest.cache``), against a private buildkitd.

A step whose output is random (so a re-run would be visible) is built with a cache
export, the daemon's build cache is pruned, and the rebuild with the matching cache
import reports the step CACHED and produces the same bytes: with a separate
``registry`` cache image (``mode=max``), with ``inline`` cache in a pushed image, and
with a ``local`` cache directory (written and read through the session content store).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.cache import CacheExport, CacheImport
from llblib_async.exporters import Export, ImageExport, LocalExport
from llblib_async.progress import VertexUpdate
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOLVE_TIMEOUT = 180.0


def _random_step(busybox: PushedImage, marker: str) -> llb.State:
    ran = llb.image(busybox.ref).run(
        f"echo {marker}; head -c 32 /dev/urandom | od -An -tx1 > /random", shell=True
    )
    return llb.scratch().copy(ran.root, "/random", "/random")


def _step_vertex(progress: llblib_async.RecordingProgress, marker: str) -> VertexUpdate:
    [vertex] = [v for v in progress.vertices.values() if marker in v.name]
    return vertex


async def _build(
    client: llblib_async.Client,
    state: llb.State,
    dest: Path,
    *,
    exports: Sequence[Export] = (),
    cache_exports: Sequence[CacheExport] = (),
    cache_imports: Sequence[CacheImport] = (),
) -> tuple[bytes, llblib_async.RecordingProgress]:
    progress = llblib_async.RecordingProgress()
    await asyncio.wait_for(
        client.solve(
            state,
            exports=[LocalExport(dest), *exports],
            progress=progress,
            cache_exports=cache_exports,
            cache_imports=cache_imports,
        ),
        SOLVE_TIMEOUT,
    )
    return await asyncio.to_thread((dest / "random").read_bytes), progress


async def test_registry_cache_survives_a_prune(
    buildkit_fresh_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    state = _random_step(buildkit_busybox_image, marker)
    cache_ref = f"{buildkit_registry.host}/llblib-cache/registry:{marker[:12]}"
    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        first, progress = await _build(
            client,
            state,
            tmp_path / "first",
            cache_exports=[CacheExport.registry(cache_ref, mode="max", insecure=True)],
        )
        assert not _step_vertex(progress, marker).cached
        assert await client.prune(all=True)

        second, progress = await _build(
            client,
            state,
            tmp_path / "second",
            cache_imports=[CacheImport.registry(cache_ref, insecure=True)],
        )
        assert _step_vertex(progress, marker).cached
        assert second == first

        # without an import the step runs again after a prune
        await client.prune(all=True)
        third, progress = await _build(client, state, tmp_path / "third")
        assert not _step_vertex(progress, marker).cached
        assert third != first


async def test_inline_cache_in_a_pushed_image(
    buildkit_fresh_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    buildkit_busybox_image: PushedImage,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    state = _random_step(buildkit_busybox_image, marker)
    image_ref = f"{buildkit_registry.host}/llblib-cache/inline:{marker[:12]}"
    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        first, progress = await _build(
            client,
            state,
            tmp_path / "first",
            exports=[ImageExport(image_ref, push=True, insecure=True)],
            cache_exports=[CacheExport.inline()],
        )
        assert not _step_vertex(progress, marker).cached
        await client.prune(all=True)
        second, progress = await _build(
            client, state, tmp_path / "second", cache_imports=[CacheImport.registry(image_ref)]
        )
        assert _step_vertex(progress, marker).cached
        assert second == first


async def test_local_cache_dir_survives_a_prune(
    buildkit_fresh_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    state = _random_step(buildkit_busybox_image, marker)
    cache_dir = tmp_path / "cache"
    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        # importing from a directory with no cache yet is skipped, as in Go
        first, progress = await _build(
            client,
            state,
            tmp_path / "first",
            cache_exports=[CacheExport.local(cache_dir, mode="max")],
            cache_imports=[CacheImport.local(cache_dir)],
        )
        assert not _step_vertex(progress, marker).cached
        index = json.loads((cache_dir / "index.json").read_text())
        [entry] = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
        blob = cache_dir / "blobs" / "sha256" / entry["digest"].removeprefix("sha256:")
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == entry["digest"]
        assert not any((cache_dir / "ingest").iterdir())

        await client.prune(all=True)
        second, progress = await _build(
            client, state, tmp_path / "second", cache_imports=[CacheImport.local(cache_dir)]
        )
        assert _step_vertex(progress, marker).cached
        assert second == first


async def test_cache_option_values() -> None:
    export = CacheExport.registry(
        "r/c:1", mode="max", image_manifest=True, oci_mediatypes=True, compression="zstd", ignore_error=True
    )
    assert export.to_pb().type == "registry"
    assert export.to_pb().attrs == {
        "ref": "r/c:1",
        "mode": "max",
        "image-manifest": "true",
        "oci-mediatypes": "true",
        "compression": "zstd",
        "ignore-error": "true",
    }
    assert CacheExport.inline().to_pb().attrs == {}
    assert dict(CacheImport.registry("r/c:1", insecure=True).attrs) == {
        "ref": "r/c:1",
        "registry.insecure": "true",
    }
    with pytest.raises(ValueError, match="mode"):
        CacheExport.registry("r/c:1", mode="all")  # type: ignore[arg-type]
    assert dict(CacheExport.local("/tmp/cache", mode="max", tag="v1").attrs) == {
        "dest": "/tmp/cache",
        "tag": "v1",
        "mode": "max",
    }
    assert dict(CacheImport.local("/tmp/cache", digest="sha256:" + "0" * 64).attrs) == {
        "src": "/tmp/cache",
        "digest": "sha256:" + "0" * 64,
    }


async def test_session_requests_export_and_import_a_local_cache(
    buildkit_fresh_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    """Cache options on ``Session.do``: a request exports a local cache dir (through the
    session's content store, announced when the session opened), the daemon's cache is
    pruned, and a request of a *new* session imports it: the step is CACHED."""
    marker = uuid.uuid4().hex
    state = _random_step(buildkit_busybox_image, marker)
    cache_dir = tmp_path / "cache"
    solver = llblib_async.Solver()

    async def run(
        dest: Path, cache_exports: Sequence[CacheExport] = (), cache_imports: Sequence[CacheImport] = ()
    ) -> tuple[bytes, bool]:
        progress = llblib_async.RecordingProgress()
        async with (
            llblib_async.connect(buildkit_fresh_daemon.address) as client,
            solver.session(client, progress=progress) as session,
        ):
            request = solver.build(
                state, exports=[LocalExport(dest)], cache_exports=cache_exports, cache_imports=cache_imports
            )
            await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
        return (dest / "random").read_bytes(), _step_vertex(progress, marker).cached

    first, cached = await run(tmp_path / "first", cache_exports=[CacheExport.local(cache_dir, mode="max")])
    assert not cached
    [entry] = json.loads((cache_dir / "index.json").read_text())["manifests"]
    assert (cache_dir / "blobs" / "sha256" / entry["digest"].removeprefix("sha256:")).is_file()

    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        await client.prune(all=True)
    second, cached = await run(tmp_path / "second", cache_imports=[CacheImport.local(cache_dir)])
    assert cached
    assert second == first


async def test_session_requests_push_and_import_a_registry_cache(
    buildkit_fresh_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_registry: Registry,
    tmp_path: Path,
) -> None:
    """Registry cache on two concurrent-capable session requests: export, prune, import."""
    marker = uuid.uuid4().hex
    state = _random_step(buildkit_busybox_image, marker)
    cache_ref = f"{buildkit_registry.host}/llblib-cache/session:{marker[:12]}"
    solver = llblib_async.Solver()
    progress = llblib_async.RecordingProgress()
    async with (
        llblib_async.connect(buildkit_fresh_daemon.address) as client,
        solver.session(client, progress=progress) as session,
    ):
        export = CacheExport.registry(cache_ref, mode="max", insecure=True)
        await asyncio.wait_for(
            session.do(solver.build(state, exports=[LocalExport(tmp_path / "a")], cache_exports=[export])),
            SOLVE_TIMEOUT,
        )
        assert not _step_vertex(progress, marker).cached
        await client.prune(all=True)
        progress.updates.clear()
        imported = solver.build(
            state,
            exports=[LocalExport(tmp_path / "b")],
            cache_imports=[CacheImport.registry(cache_ref, insecure=True)],
        )
        await asyncio.wait_for(session.do(imported), SOLVE_TIMEOUT)
        assert _step_vertex(progress, marker).cached
    assert (tmp_path / "b" / "random").read_bytes() == (tmp_path / "a" / "random").read_bytes()
