"""``llb.persistent`` against a real buildkitd: each run sees what the previous runs wrote.

The rootfs is the busybox tree of the ``buildkit_busybox_rootfs`` fixture copied onto
scratch; what the runs wrote is exported with :class:`~llblib_async.LocalExport` and
read back.  The graph itself is checked against llblib's golden in
``tests/test_llb_persistent.py``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from test_llb_exec_live import _collect, _export, _rootfs

from llblib_async import llb
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_three_runs_see_the_root_and_mounts_earlier_runs_wrote(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    seed = llb.scratch().mkfile("/seed", b"seed\n")
    ws = llb.persistent(
        _rootfs(buildkit_busybox_rootfs),
        mounts=[llb.bind("/work", llb.scratch()), llb.bind("/ro", seed, readonly=True)],
    )
    cache = llb.cache_mount("/cache", id=f"persistent-{uuid.uuid4()}")
    ws = ws.run(
        "echo one > /work/a; echo root-one > /root-a; cat /ro/seed > /work/seed-copy; echo c > /cache/x",
        shell=True,
        mounts=[cache],
    )
    ws = ws.run(
        "cat /work/a /root-a > /work/b; echo root-two > /root-b;"
        " if [ -e /cache/x ]; then echo cache-seen; else echo no-cache; fi > /work/cache-check",
        shell=True,
    )
    ws = ws.run("cat /work/b /root-b > /work/c", shell=True, cwd="/work")
    work = ws.mount("/work")
    out = await _export(buildkit_daemon, work, tmp_path / "work")
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c", "cache-check", "seed-copy"]
    assert (out / "a").read_text() == "one\n"
    assert (out / "b").read_text() == "one\nroot-one\n"
    assert (out / "c").read_text() == "one\nroot-one\nroot-two\n"
    assert (out / "seed-copy").read_text() == "seed\n"
    # The per-run cache mount of the first run is not mounted by the second.
    assert (out / "cache-check").read_text() == "no-cache\n"
    root = await _export(
        buildkit_daemon,
        _collect({"root-a": (ws.root, "/root-a"), "root-b": (ws.root, "/root-b")}),
        tmp_path / "root",
    )
    assert (root / "root-a").read_text() == "root-one\n"
    assert (root / "root-b").read_text() == "root-two\n"
    assert ws.mount("/ro") is seed


async def test_with_mount_and_the_mounts_in_a_plain_run(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    given = llb.scratch().mkfile("/given", b"given\n")
    ws = llb.persistent(rootfs).run("echo r > /r", shell=True)
    before = ws
    ws = ws.with_mount("/extra", given).run("cat /extra/given /r > /extra/seen", shell=True)
    # Go's AsRun: the propagated mounts, as they are now, in a run of another State.
    plain = rootfs.run(
        "cat /extra/seen > /out/all; ls /extra > /out/listing",
        shell=True,
        mounts=[*ws.mounts, llb.bind("/out", llb.scratch())],
    )
    out = await _export(buildkit_daemon, plain.get_mount("/out"), tmp_path / "out")
    assert (out / "all").read_text() == "given\nr\n"
    assert (out / "listing").read_text().split() == ["given", "seen"]
    extra = await _export(buildkit_daemon, ws.mount("/extra"), tmp_path / "extra")
    assert sorted(p.name for p in extra.iterdir()) == ["given", "seen"]
    assert before.mounts == ()
