"""The first end-to-end slice: scratch + a file op + a local tree, solved and exported."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.progress import StatusUpdate
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


def make_tree(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """A context with nested dirs, odd modes, an empty and a multi-chunk file, a symlink."""
    files: dict[str, tuple[bytes | None, int]] = {
        "hello.txt": (b"hello\n", 0o644),
        "bin/tool.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "secret/key": (b"k" * 10, 0o600),
        "empty": (b"", 0o640),
        "deep/a/b/c/data.bin": (os.urandom(3 * 1024 * 1024 + 17), 0o644),
    }
    for rel, (data, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        assert data is not None
        p.write_bytes(data)
        p.chmod(mode)
    (root / "secret").chmod(0o700)
    (root / "link").symlink_to("hello.txt")
    files["link"] = (None, 0)
    return files


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: kind, permission bits, content (or link target)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(p).encode())
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def slice_state(ctx: Path) -> llb.State:
    return (
        llb.scratch()
        .mkdir("/etc", mode=0o755)
        .mkfile("/etc/motd", b"made by a file op\n", mode=0o600)
        .copy(llb.local(ctx), "/", "/ctx/")
    )


async def test_scratch_fileop_and_local_tree_export_byte_for_byte(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make_tree(ctx)
    out = tmp_path / "out"
    recorder = llblib_async.RecordingProgress()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(
            slice_state(ctx), exports=[llblib_async.LocalExport(out)], progress=recorder
        )
    assert result.ref
    exported = snapshot(out)
    assert exported.pop("etc") == ("dir", 0o755, b"")
    assert exported.pop("etc/motd") == ("file", 0o600, b"made by a file op\n")
    ctx_dir = exported.pop("ctx")
    assert ctx_dir[0] == "dir"
    assert {f"ctx/{k}": v for k, v in snapshot(ctx).items()} == exported
    # every vertex finished without error, and the copy's data went through the session
    vertices = recorder.vertices.values()
    assert vertices
    assert all(v.completed and not v.error for v in vertices)


async def test_tar_export_carries_the_same_tree(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    files = make_tree(ctx)
    tar_path = tmp_path / "out.tar"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(slice_state(ctx), exports=[llblib_async.TarExport(tar_path)])
    with tarfile.open(tar_path) as tar:
        members = {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}
        for rel, (data, mode) in files.items():
            m = members[f"ctx/{rel}"]
            if data is None:
                assert m.issym()
                assert m.linkname == "hello.txt"
                continue
            assert m.isfile()
            assert stat.S_IMODE(m.mode) == mode
            extracted = tar.extractfile(m)
            assert extracted is not None
            assert extracted.read() == data
        assert members["etc/motd"].mode & 0o777 == 0o600


async def test_plain_progress_prints_every_vertex_done(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text(str(time.time_ns()))  # new content: nothing cached
    buf = io.StringIO()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(slice_state(ctx), exports=[llblib_async.LocalExport(tmp_path / "o")],
                           progress=llblib_async.PlainProgress(buf))  # fmt: skip
    text = buf.getvalue()
    assert "#1 " in text
    assert "[internal] load local" in text or "local://" in text
    assert "DONE" in text
    assert "ERROR" not in text


async def test_failed_copy_raises_solve_error_naming_the_path(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    state = llb.scratch().copy(llb.local(ctx), "/does-not-exist", "/x")
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.SolveError) as info:
            await client.solve(state)
    assert "does-not-exist" in str(info.value)
    assert info.value.vertex is not None
    assert info.value.vertex.startswith("sha256:")


async def test_missing_local_dir_fails_before_anything_is_sent(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.LocalDirError) as info:
            await client.solve(llb.scratch().copy(llb.local(missing), "/", "/"))
    assert str(missing) in str(info.value)


async def test_daemon_killed_mid_build_fails_promptly(
    buildkit_fresh_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = tmp_path / "big"
    ctx.mkdir()
    (ctx / "big.bin").write_bytes(os.urandom(256 * 1024 * 1024))
    transfer_started = asyncio.Event()

    class KillOnTransfer:
        def update(self, update: StatusUpdate) -> None:
            if update.statuses or any(v.started for v in update.vertices):
                transfer_started.set()

        def close(self) -> None:
            pass

    async with llblib_async.connect(buildkit_fresh_daemon.address) as client:
        build = asyncio.create_task(
            client.solve(llb.scratch().copy(llb.local(ctx), "/", "/"), progress=KillOnTransfer())
        )
        await asyncio.wait_for(transfer_started.wait(), 30)
        buildkit_fresh_daemon.kill()
        with pytest.raises(llblib_async.BuildKitError) as info:
            await asyncio.wait_for(build, 60)  # a hang guard: the build must fail, not wait
    assert isinstance(info.value, llblib_async.ConnectionLostError | llblib_async.SolveError)
    assert buildkit_fresh_daemon.address in str(info.value) or "connection" in str(info.value).lower()
