"""File actions and copy options against a real buildkitd: each option does what it says.

Results come back as a tar archive (``TarExport``) so that owners, modes and
timestamps can be read exactly as the daemon produced them.
"""

from __future__ import annotations

import datetime
import io
import tarfile
import uuid
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

EPOCH_2001 = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "dir" / "a.txt").write_text("a")
    (ctx / "dir" / "b.log").write_text("b")
    (ctx / "dir" / "sub" / "c.txt").write_text("c")
    (ctx / "one.cfg").write_text("1")
    (ctx / "two.cfg").write_text("2")
    (ctx / "target.txt").write_text("pointed at")
    (ctx / "link.txt").symlink_to("target.txt")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("packed/inside.txt")
        data = b"from the archive\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "archive.tar.gz").write_bytes(buf.getvalue())
    return ctx


async def build_tar(
    address: str, state: llb.State, tmp_path: Path
) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = tmp_path / f"out-{uuid.uuid4().hex}.tar"
    async with llblib_async.connect(address) as client:
        await client.solve(state, exports=[llblib_async.TarExport(out)])
    entries: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(out) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            entries[m.name.strip("/")] = (m, f.read() if f else b"")
    return entries


async def test_include_and_exclude_patterns(
    buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path
) -> None:
    st = llb.scratch().copy(
        llb.local(context), "/dir", "/out", include=["*.txt", "sub"], exclude=["sub/c.txt"]
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    assert {n for n in files if n.startswith("out/")} == {"out/a.txt", "out/sub"}


async def test_contents_only_versus_directory(
    buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path
) -> None:
    src = llb.local(context)
    st = llb.scratch().file(
        llb.copy(src, "/dir", "/whole/", create_dest_path=True).copy(
            src, "/dir", "/contents/", contents_only=True, create_dest_path=True
        )
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    assert "whole/dir/a.txt" in files
    assert "contents/a.txt" in files
    assert "contents/dir" not in files


async def test_create_dest_path_is_needed_for_missing_parents(
    buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path
) -> None:
    src = llb.local(context)
    ok = llb.scratch().copy(src, "/one.cfg", "/deep/er/one.cfg", create_dest_path=True)
    files = await build_tar(buildkit_daemon.address, ok, tmp_path)
    assert files["deep/er/one.cfg"][1] == b"1"
    without = llb.scratch().copy(src, "/one.cfg", "/missing/one.cfg")
    with pytest.raises(llblib_async.SolveError):
        await build_tar(buildkit_daemon.address, without, tmp_path)


async def test_wildcards(buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path) -> None:
    src = llb.local(context)
    st = llb.scratch().file(
        llb.mkdir("/cfg")
        .copy(src, "/*.cfg", "/cfg/", allow_wildcard=True)
        .copy(src, "/*.nothing", "/cfg/", allow_wildcard=True, allow_empty_wildcard=True)
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    assert {n for n in files if n.startswith("cfg/")} == {"cfg/one.cfg", "cfg/two.cfg"}
    empty_not_allowed = llb.scratch().copy(
        src, "/*.nothing", "/x/", allow_wildcard=True, create_dest_path=True
    )
    with pytest.raises(llblib_async.SolveError):
        await build_tar(buildkit_daemon.address, empty_not_allowed, tmp_path)


async def test_owner_mode_and_timestamp(
    buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path
) -> None:
    src = llb.local(context)
    st = llb.scratch().file(
        llb.copy(src, "/one.cfg", "/owned.cfg", owner="1234:5678", mode=0o640, timestamp=EPOCH_2001)
        .copy(src, "/two.cfg", "/plusx.cfg", mode="u+x")
        .mkdir("/d", 0o700, owner=(42, 43), timestamp=EPOCH_2001)
        .mkfile("/d/f", b"data", 0o604, owner="7:8")
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    owned = files["owned.cfg"][0]
    assert (owned.uid, owned.gid, owned.mode & 0o7777) == (1234, 5678, 0o640)
    assert owned.mtime == int(EPOCH_2001.timestamp())
    assert files["plusx.cfg"][0].mode & 0o100
    d = files["d"][0]
    assert (d.uid, d.gid, d.mode & 0o7777) == (42, 43, 0o700)
    f = files["d/f"][0]
    assert (f.uid, f.gid, f.mode & 0o7777) == (7, 8, 0o604)
    assert files["d/f"][1] == b"data"


async def test_follow_symlinks(buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path) -> None:
    src = llb.local(context)
    st = llb.scratch().file(
        llb.copy(src, "/link.txt", "/followed.txt", follow_symlinks=True).copy(src, "/link.txt", "/kept.txt")
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    followed, kept = files["followed.txt"][0], files["kept.txt"][0]
    assert followed.isfile()
    assert files["followed.txt"][1] == b"pointed at"
    assert kept.issym()
    assert kept.linkname == "target.txt"


async def test_attempt_unpack_extracts_archives(
    buildkit_daemon: BuildkitDaemon, context: Path, tmp_path: Path
) -> None:
    src = llb.local(context)
    st = llb.scratch().file(
        llb.copy(src, "/archive.tar.gz", "/unpacked/", attempt_unpack=True, create_dest_path=True).copy(
            src, "/archive.tar.gz", "/as-is/", create_dest_path=True
        )
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    assert files["unpacked/packed/inside.txt"][1] == b"from the archive\n"
    assert "as-is/archive.tar.gz" in files


async def test_rm_and_symlink_actions(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    st = llb.scratch().file(
        llb.mkdir("/a/b", parents=True)
        .mkfile("/a/b/keep", b"k")
        .mkfile("/a/b/x.tmp", b"x")
        .mkfile("/a/b/y.tmp", b"y")
        .rm("/a/b/*.tmp", allow_wildcard=True)
        .rm("/not-there", allow_not_found=True)
        .symlink("/a/b/keep", "/shortcut")
    )
    files = await build_tar(buildkit_daemon.address, st, tmp_path)
    assert {n for n in files if n.startswith("a/b/")} == {"a/b/keep"}
    link = files["shortcut"][0]
    assert link.issym()
    assert link.linkname == "/a/b/keep"
    with pytest.raises(llblib_async.SolveError):
        await build_tar(buildkit_daemon.address, llb.scratch().rm("/not-there"), tmp_path)
