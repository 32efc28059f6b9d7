"""Exec ops, mounts, merge and diff against a real buildkitd: their effects on exported files.

The rootfs of every exec is the busybox tree of the ``buildkit_busybox_rootfs`` fixture
copied onto scratch (no registry needed).  What a command saw is written to files
that are then exported with :class:`~llblib_async.LocalExport` and read back.

Secret mounts/env and SSH sockets are proven live in ``tests/test_secrets.py`` and
``tests/test_ssh_sockets.py``.  Not proven live: ``security="insecure"`` (needs the
``security.insecure`` entitlement), CDI devices and proxy env (their op bytes are
checked against Go in ``tests/test_llb_exec_unit.py`` and the oracle).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _rootfs(busybox_rootfs: Path) -> llb.State:
    return llb.scratch().copy(llb.local(busybox_rootfs), "/", "/")


def _collect(files: dict[str, tuple[llb.State, str]]) -> llb.State:
    """One small State holding ``path`` of each State under the given name (instead of whole rootfs)."""
    action: llb.FileAction | None = None
    for name, (state, path) in files.items():
        action = llb.copy(state, path, "/" + name) if action is None else action.copy(state, path, "/" + name)
    assert action is not None
    return llb.scratch().file(action)


async def _export(
    daemon: BuildkitDaemon, state: llb.State, dest: Path, progress: llblib_async.ProgressSink | None = None
) -> Path:
    async with llblib_async.connect(daemon.address) as client:
        await client.solve(state, exports=[llblib_async.LocalExport(dest)], progress=progress)
    return dest


async def test_command_sees_env_cwd_user_hostname_hosts_ulimit_and_default_path(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    st = _rootfs(buildkit_busybox_rootfs).with_env("GREETING", "hello world").with_dir("/work")
    es = st.run(
        'echo "$GREETING|$(pwd)|$(id -u):$(id -g)|$(hostname)|$PATH|$(ulimit -n)" > /tmp/facts;'
        ' grep db.internal /etc/hosts > /tmp/hosts; echo "$ONLY_HERE" > /tmp/only',
        shell=True,
        env={"ONLY_HERE": "run env"},
        cwd="sub",  # relative: /work/sub, created by BuildKit
        user="65534:65534",
        hostname="buildbox",
        extra_hosts={"db.internal": "10.9.8.7"},
        ulimits=[llb.Ulimit("nofile", 1234, 1234)],
    )
    out = await _export(
        buildkit_daemon,
        _collect({"facts": (es, "/tmp/facts"), "hosts": (es, "/tmp/hosts"), "only": (es, "/tmp/only")}),
        tmp_path / "out",
    )
    facts = (out / "facts").read_text().strip().split("|")
    # No PATH was sent (like Go without caps): the daemon sets the default one.
    assert facts == ["hello world", "/work/sub", "65534:65534", "buildbox", DEFAULT_PATH, "1234"]
    assert (out / "hosts").read_text().split() == ["10.9.8.7", "db.internal"]
    assert (out / "only").read_text() == "run env\n"


async def test_state_settings_reach_later_execs(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    st = (
        _rootfs(buildkit_busybox_rootfs)
        .with_env("A", "1")
        .with_env("B", "2")
        .with_env("A", "3")
        .without_env("B")
        .with_user("nobody")
        .with_dir("/tmp")
        .with_args(["sh", "-c", "env | grep -E '^(A|B)=' > facts; id -un >> facts"])
    )
    es = st.run()
    out = await _export(buildkit_daemon, _collect({"facts": (es, "/tmp/facts")}), tmp_path / "out")
    assert (out / "facts").read_text().split() == ["A=3", "nobody"]


async def test_readonly_bind_cannot_be_written(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    data = llb.scratch().mkfile("/file", b"original\n")
    es = _rootfs(buildkit_busybox_rootfs).run(
        "(echo changed > /ro/file) 2>/tmp/err; echo $? > /tmp/rc; cat /ro/file > /tmp/content; exit 3",
        shell=True,
        mounts=[llb.bind("/ro", data, readonly=True)],
        valid_exit_codes=[0, 3],  # the exit 3 at the end proves valid_exit_codes too
    )
    out = await _export(
        buildkit_daemon,
        _collect({"err": (es, "/tmp/err"), "rc": (es, "/tmp/rc"), "content": (es, "/tmp/content")}),
        tmp_path / "out",
    )
    assert (out / "rc").read_text().strip() != "0"
    assert "Read-only file system" in (out / "err").read_text()
    assert (out / "content").read_text() == "original\n"


async def test_writable_binds_are_outputs_and_chain(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    seed = llb.scratch().mkfile("/seed", b"seed\n")
    first = rootfs.run(
        "echo a > /a/made; cat /b/seed > /b/copy; echo root > /in-root",
        shell=True,
        mounts=[llb.bind("/b", seed), llb.bind("/a", llb.scratch())],
    )
    # The /a output is mounted into a second exec, which appends to it.
    second = rootfs.run(
        "echo more >> /data/made", shell=True, mounts=[llb.bind("/data", first.get_mount("/a"))]
    )
    merged = llb.merge([first.get_mount("/b"), second.get_mount("/data")])
    out = await _export(buildkit_daemon, merged, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["copy", "made", "seed"]
    assert (out / "made").read_text() == "a\nmore\n"
    assert (out / "copy").read_text() == "seed\n"
    # The root output has the root change and an empty mount stub at most, not the mounts' files.
    check = first.root.run("ls -A /a /b > /tmp/listing 2>&1; cat /in-root >> /tmp/listing; true", shell=True)
    out2 = await _export(buildkit_daemon, _collect({"listing": (check, "/tmp/listing")}), tmp_path / "out2")
    listing = (out2 / "listing").read_text()
    assert "made" not in listing
    assert "copy" not in listing
    assert "root" in listing


async def test_cache_mount_persists_across_builds(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    cache_id = f"exec-live-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex

    def with_cache(command: str, *, ignore_cache: bool = False) -> llb.ExecState:
        mount = llb.cache_mount("/cache", id=cache_id, sharing="locked")
        return rootfs.run(command, shell=True, mounts=[mount], ignore_cache=ignore_cache)

    write = with_cache(f"echo {token} > /cache/stamp; ls /cache > /tmp/first")
    out1 = await _export(buildkit_daemon, _collect({"first": (write, "/tmp/first")}), tmp_path / "one")
    assert (out1 / "first").read_text().split() == ["stamp"]
    # A second build (another command, so not a cache hit) sees what the first one left.
    read = with_cache("cat /cache/stamp > /tmp/seen")
    probe = read.root.run("ls -A /cache > /tmp/left; true", shell=True)
    out2 = await _export(
        buildkit_daemon,
        _collect({"seen": (read, "/tmp/seen"), "left": (probe, "/tmp/left")}),
        tmp_path / "two",
    )
    assert (out2 / "seen").read_text() == token + "\n"
    # The cache is not part of the result.
    assert (out2 / "left").read_text() == ""
    # BuildKit drops the cache mounts of an exec solved with ignore_cache (like `build --no-cache`).
    fresh = with_cache("ls -A /cache > /tmp/after", ignore_cache=True)
    out3 = await _export(buildkit_daemon, _collect({"after": (fresh, "/tmp/after")}), tmp_path / "three")
    assert (out3 / "after").read_text() == ""


async def test_tmpfs_contents_do_not_leak(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    es = _rootfs(buildkit_busybox_rootfs).run(
        "echo secret > /scratchpad/f; grep ' /scratchpad ' /proc/mounts > /tmp/mount",
        shell=True,
        mounts=[llb.tmpfs("/scratchpad", size=1 << 20)],
    )
    probe = es.root.run("ls -A /scratchpad > /tmp/left 2>&1; true", shell=True)
    out = await _export(
        buildkit_daemon,
        _collect({"mount": (es, "/tmp/mount"), "left": (probe, "/tmp/left")}),
        tmp_path / "out",
    )
    mount = (out / "mount").read_text().split()
    assert mount[1:3] == ["/scratchpad", "tmpfs"]
    assert "size=1024k" in mount[3]
    assert "f" not in (out / "left").read_text().split()


async def test_network_none_has_only_loopback(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    cmd = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /tmp/ifs"
    isolated = rootfs.run(cmd, shell=True, network="none")
    default = rootfs.run(cmd, shell=True)
    out = await _export(
        buildkit_daemon,
        _collect({"none": (isolated, "/tmp/ifs"), "default": (default, "/tmp/ifs")}),
        tmp_path / "out",
    )
    assert (out / "none").read_text().split() == ["lo"]
    # The test daemon's worker uses the host network, which has more than lo.
    assert len((out / "default").read_text().split()) > 1


async def test_exit_codes_and_failures(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    ok = rootfs.run("echo accepted > /tmp/r; exit 3", shell=True, valid_exit_codes=[3])
    out = await _export(buildkit_daemon, _collect({"r": (ok, "/tmp/r")}), tmp_path / "ok")
    assert (out / "r").read_text() == "accepted\n"

    failing = rootfs.run(
        f"echo about to fail {uuid.uuid4().hex}; echo oops >&2; exit 7", shell=True, name="doomed step"
    )
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.SolveError) as info:
            await client.solve(failing)
    err = info.value
    assert err.exit_code == 7
    assert "about to fail" in err.logs
    assert "oops" in err.logs
    assert err.vertex == llb.digest(failing)
    assert err.vertex_name == "doomed step"

    # Exit 3 without valid_exit_codes fails too; with [0] only 0 counts.
    strict = rootfs.run("exit 3", shell=True, valid_exit_codes=[0])
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.SolveError) as info:
            await client.solve(strict)
    assert info.value.exit_code == 3


async def test_diff_and_merge_trees(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    base = _rootfs(buildkit_busybox_rootfs)
    changed = base.run("echo a > /a.txt; rm /etc/group; mkdir -p /new/dir", shell=True).root
    changes = llb.diff(base, changed)
    # The diff alone holds only what changed: new files, and the dir a file was deleted from
    # (the deletion itself is a whiteout, not exported as a file).
    out = await _export(buildkit_daemon, changes, tmp_path / "diff")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.txt", "etc", "new", "new/dir"]
    # Merged onto another base, it replays the change including the deletion.
    other = (
        llb.scratch().mkdir("/etc").mkfile("/etc/group", "g").mkfile("/etc/passwd", "p").mkfile("/keep", "k")
    )
    merged = llb.merge([other, changes, llb.scratch().mkfile("/last", "l")])
    out2 = await _export(buildkit_daemon, merged, tmp_path / "merge")
    assert sorted(str(p.relative_to(out2)) for p in out2.rglob("*")) == [
        "a.txt",
        "etc",
        "etc/passwd",
        "keep",
        "last",
        "new",
        "new/dir",
    ]
    assert (out2 / "a.txt").read_text() == "a\n"


async def test_daemon_reports_our_digests(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    # The daemon re-marshals every op with Go and re-hashes: equal digests = Go-identical bytes.
    base = _rootfs(buildkit_busybox_rootfs)
    es = base.run(
        ["sh", "-c", f"echo {uuid.uuid4().hex} > /o/f"],
        env={"Z": "1", "A": "2"},
        cwd="/w",
        network="none",
        extra_hosts={"h": "::1"},
        ulimits=[("nofile", 100, 200)],
        valid_exit_codes=[0, 1],
        mounts=[
            llb.bind("/o", llb.scratch()),
            llb.tmpfs("/t", size=4096),
            llb.cache_mount("/c", id="digests", sharing="private"),
            llb.bind("/ro", base, readonly=True, selector="/etc"),
        ],
        name="digest check",
    )
    result = llb.merge([es.get_mount("/o"), llb.diff(base, es.root)])
    recorder = llblib_async.RecordingProgress()
    await _export(buildkit_daemon, result, tmp_path / "out", progress=recorder)
    seen = set(recorder.vertices)
    definition = llb.marshal(result)
    assert set(definition.digests[:-1]) <= seen
    assert all(v.completed and not v.error for v in recorder.vertices.values())


async def test_fresh_run_runs_again_per_build_of_the_graph_but_once_per_state(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    rootfs = _rootfs(buildkit_busybox_rootfs)
    random = "od -An -tx1 -N16 /dev/urandom > /tmp/rand"

    def build(*, fresh: bool = False, ignore_cache: bool = False) -> llb.State:
        # The program "building the graph": each call is a new run() call.
        es = rootfs.run(random, shell=True, fresh=fresh, ignore_cache=ignore_cache)
        return _collect({"rand": (es, "/tmp/rand")})

    async def solve_each(*states: llb.State) -> list[str]:
        """Solve each State as its own request, one after the other, in one new session."""
        solver = llblib_async.Solver()
        outputs = []
        async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
            for state in states:
                dest = tmp_path / uuid.uuid4().hex
                await session.do(solver.build(state, exports=[llblib_async.LocalExport(dest)]))
                outputs.append((dest / "rand").read_text())
        return outputs

    fresh = build(fresh=True)
    first, again = await solve_each(fresh, fresh)
    assert first.strip()
    assert first == again
    # The graph built again (as a second run of the program would) runs the command again,
    # while the first State is still the cached op.
    rebuilt, old = await solve_each(build(fresh=True), fresh)
    assert rebuilt != first
    assert old == first
    # Without fresh=, building the graph again hits the cache...
    plain = await solve_each(build(), build())
    assert plain[0] == plain[1]
    # ...and BuildKit's ignore_cache runs one State again for each request.
    ignored = build(ignore_cache=True)
    once, twice = await solve_each(ignored, ignored)
    assert once != twice
