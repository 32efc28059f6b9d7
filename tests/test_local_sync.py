"""Local directories on a live buildkitd: what is (not) sent again, ownership, escapes.

* ``Solver.local`` tracks content: one session sends an unchanged directory once and a
  changed one again, only the changed files; a new session reuses the daemon's copy.
  A plain ``llb.local`` is keyed by session and name only, so within one session the
  daemon keeps using its first copy (the case ``track_content`` exists for).
* Files get uid/gid 0 in the build (as with Go's client), or the ``owner`` asked for.
* Symlinks that point outside the directory (or ``..`` patterns) never serve a byte
  from outside; a file that vanishes between listing and sending fails the build
  with an error naming it.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import llblib_async
from llblib_async import Solver, llb
from llblib_async._fsutil import send as send_module
from llblib_async._fsutil.walk import FilterOptions
from llblib_async._fsutil.walk import walk as real_walk
from llblib_async._pb.fsutil.types import Stat
from llblib_async.exporters import LocalExport, TarExport
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOLVE_TIMEOUT = 120.0


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    for i in range(4):
        (ctx / f"f{i}.bin").write_bytes(os.urandom(50_000))
    (ctx / "version.txt").write_text("one")
    return ctx


def _copied(source: llb.State) -> llb.State:
    return llb.scratch().copy(source, "/", "/")


async def test_one_session_sends_an_unchanged_local_once_and_a_changed_one_again(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    total = sum(p.stat().st_size for p in ctx.iterdir())
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        for step in ("first", "again"):
            request = solver.build(_copied(solver.local(ctx)), exports=[LocalExport(tmp_path / step)])
            await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
        assert [(u.requests, u.bytes_sent) for u in session.uploads] == [(5, total)]
        assert (tmp_path / "again" / "version.txt").read_text() == "one"

        (ctx / "version.txt").write_text("two")
        request = solver.build(_copied(solver.local(ctx)), exports=[LocalExport(tmp_path / "changed")])
        await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
        # sent again, but only the changed file
        assert [(u.requests, u.bytes_sent) for u in session.uploads] == [(5, total), (1, 3)]
        assert (tmp_path / "changed" / "version.txt").read_text() == "two"

        # the case track_content is for: a plain llb.local is not sent again in one session
        plain = llb.local(ctx, name="plain-" + uuid.uuid4().hex[:8])
        await asyncio.wait_for(session.do(solver.build(_copied(plain))), SOLVE_TIMEOUT)
        (ctx / "version.txt").write_text("three")
        stale = solver.build(_copied(plain), exports=[LocalExport(tmp_path / "stale")])
        await asyncio.wait_for(session.do(stale), SOLVE_TIMEOUT)
        assert (tmp_path / "stale" / "version.txt").read_text() == "two"


async def test_a_new_session_sends_only_the_changed_files(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        async with solver.session(client) as session:
            await asyncio.wait_for(session.do(solver.build(_copied(solver.local(ctx)))), SOLVE_TIMEOUT)
            assert [u.requests for u in session.uploads] == [5]
        async with solver.session(client) as session:
            await asyncio.wait_for(session.do(solver.build(_copied(solver.local(ctx)))), SOLVE_TIMEOUT)
            assert [(u.entries, u.requests, u.bytes_sent) for u in session.uploads] == [(5, 0, 0)]
        (ctx / "f2.bin").write_bytes(b"changed")
        async with solver.session(client) as session:
            request = solver.build(_copied(solver.local(ctx)), exports=[LocalExport(tmp_path / "out")])
            await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
            assert [(u.requests, u.bytes_sent) for u in session.uploads] == [(1, 7)]
    assert (tmp_path / "out" / "f2.bin").read_bytes() == b"changed"


def _tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


async def test_files_are_owned_by_root_or_the_owner_asked_for(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    os.chown(ctx / "f0.bin", 1234, 5678)
    (ctx / "sub").mkdir()
    os.chown(ctx / "sub", 1234, 5678)
    solver = Solver()
    default = solver.local(ctx)
    mapped = solver.local(ctx, name="mapped-" + uuid.uuid4().hex[:8], owner=(1000, 1001))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        for label, source in (("default", default), ("mapped", mapped)):
            out = tmp_path / f"{label}.tar"
            request = solver.build(_copied(source), exports=[TarExport(out)])
            await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
    default_members = _tar_members((tmp_path / "default.tar").read_bytes())
    assert {(m.uid, m.gid) for m in default_members.values()} == {(0, 0)}
    mapped_members = _tar_members((tmp_path / "mapped.tar").read_bytes())
    assert {
        n: (m.uid, m.gid) for n, m in mapped_members.items() if n in ("f0.bin", "sub", "version.txt")
    } == {
        "f0.bin": (1000, 1001),
        "sub": (1000, 1001),
        "version.txt": (1000, 1001),
    }
    with pytest.raises(ValueError, match="owner"):
        solver.local(ctx, owner=(-1, 0))


async def test_links_and_patterns_never_serve_files_outside_the_directory(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    secret = b"outside-" + uuid.uuid4().hex.encode()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(secret)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "inside.txt").write_text("inside")
    (ctx / "file-link").symlink_to("../outside/secret.txt")
    (ctx / "abs-link").symlink_to(outside / "secret.txt")
    (ctx / "dir-link").symlink_to("../outside")
    solver = Solver()
    sources = {
        "all": solver.local(ctx),
        "follow": solver.local(ctx, name="follow", follow_paths=["dir-link/secret.txt", "file-link"]),
        "dotdot": solver.local(ctx, name="dotdot", include=["../outside/*", "dir-link/*"]),
    }
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        for label, source in sources.items():
            request = solver.build(_copied(source), exports=[TarExport(tmp_path / f"{label}.tar")])
            await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
    for label in sources:
        data = (tmp_path / f"{label}.tar").read_bytes()
        assert secret not in data, label
        members = _tar_members(data)
        for link in ("file-link", "abs-link", "dir-link"):
            if link in members:
                assert members[link].issym(), (label, link)
        assert not any(n.startswith(("outside", "dir-link/")) for n in members), (label, sorted(members))
    all_members = _tar_members((tmp_path / "all.tar").read_bytes())
    assert all_members["file-link"].linkname == "../outside/secret.txt"
    assert all_members["abs-link"].linkname == str(outside / "secret.txt")


@pytest.mark.parametrize("api", ["session", "client"])
async def test_a_file_vanishing_mid_upload_fails_the_build_naming_it(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    ctx = _context(tmp_path)
    victim = ctx / "f2.bin"

    def walk_then_delete(root: str, opts: FilterOptions | None = None) -> Iterator[Stat]:
        for st in real_walk(root, opts):
            yield st
            if st.path == victim.name:
                victim.unlink()  # listed with its size and mtime; gone when the daemon asks

    monkeypatch.setattr(send_module, "walk", walk_then_delete)
    solver = Solver()
    state = _copied(solver.local(ctx))
    async with llblib_async.connect(buildkit_daemon.address) as client:

        async def build() -> None:
            if api == "session":
                async with solver.session(client) as session:
                    await asyncio.wait_for(session.do(solver.build(state)), SOLVE_TIMEOUT)
            else:
                await asyncio.wait_for(client.solve(state), SOLVE_TIMEOUT)

        with pytest.raises(llblib_async.UploadError) as caught:
            await build()
    assert isinstance(caught.value, llblib_async.SolveError)
    assert caught.value.local == llb.default_local_name(ctx)
    assert "f2.bin changed since it was listed: vanished" in str(caught.value)
    assert not victim.exists()


async def test_a_single_file_local_holds_only_that_file(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    solver = Solver()
    source = solver.local(ctx / "version.txt")
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        request = solver.build(_copied(source), exports=[LocalExport(tmp_path / "out")])
        await asyncio.wait_for(session.do(request), SOLVE_TIMEOUT)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["version.txt"]
    with pytest.raises(llblib_async.LocalDirError, match="does not exist"):
        solver.local(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a file"):
        solver.local(ctx / "version.txt", exclude=["x"])
