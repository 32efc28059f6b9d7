"""Containers on the build worker against a real buildkitd: requests, result handlers,
processes, streams, signals, hooks, OnError (scripted), concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from host_processes import processes_with, until

import llblib_async
from llblib_async import (
    ContainerError,
    ContainerExitError,
    OnError,
    Process,
    ProcessResult,
    Result,
    SolveError,
    Solver,
    llb,
)
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _rootfs(busybox_rootfs: Path) -> llb.State:
    return llb.scratch().copy(llb.local(busybox_rootfs), "/", "/")


async def test_container_request_runs_with_mounts_env_and_user(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    solver = Solver()
    data = llb.scratch().mkfile("/hello.txt", b"from a state\n")
    request = solver.container(
        _rootfs(buildkit_busybox_rootfs),
        [
            "/bin/sh",
            "-c",
            "cat /data/hello.txt; echo $GREETING; pwd; id -u; hostname; "
            "touch /data/x 2>/dev/null || echo ro; echo t > /tmp/t && cat /tmp/t; "
            "grep -c myhost.test /etc/hosts; test -d /cache && echo cache-ok; echo err >&2",
        ],
        env={"GREETING": "hi"},
        cwd="/tmp",
        user="65534",
        hostname="ctr-host",
        extra_hosts={"myhost.test": "10.1.2.3"},
        network="none",
        mounts=[
            llb.bind("/data", data, readonly=True),
            llb.tmpfs("/tmp"),
            llb.cache_mount("/cache", id="ctr-test-cache"),
        ],
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        result = await session.do(request)
    assert result.container is not None
    assert result.container.exit_code == 0
    assert result.container.stdout.decode().split("\n") == [
        "from a state", "hi", "/tmp", "65534", "ctr-host", "ro", "t", "1", "cache-ok", "",
    ]  # fmt: skip
    assert result.container.stderr == b"err\n"


async def test_container_request_non_zero_exit_is_a_typed_error_with_the_output_tail(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    solver = Solver()
    request = solver.container(
        _rootfs(buildkit_busybox_rootfs), "/bin/sh -c 'echo first; echo last words >&2; exit 42'"
    )
    unchecked = solver.container(_rootfs(buildkit_busybox_rootfs), "/bin/sh -c 'exit 3'", check=False)
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(ContainerExitError) as info:
            await session.do(request)
        answer = await session.do(unchecked)
    assert info.value.exit_code == 42
    assert info.value.command == ("/bin/sh", "-c", "echo first; echo last words >&2; exit 42")
    assert "last words" in info.value.output
    assert "last words" in str(info.value)
    assert info.value.result.stdout == b"first\n"
    assert answer.container is not None
    assert answer.container.exit_code == 3


async def test_stdin_round_trips_10_mib_and_stdout_stderr_stay_apart(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    payload = os.urandom(10 << 20)
    solver = Solver()
    seen: dict[str, object] = {}

    async def handler(result: Result) -> None:
        async with result.container() as ctr:
            proc = await ctr.start(
                ["/bin/sh", "-c", "cat; echo to-stderr >&2"], stdin="pipe", stdout="pipe", stderr="pipe"
            )
            assert proc.stdin is not None
            assert proc.stdout is not None
            assert proc.stderr is not None

            async def feed() -> None:
                assert proc.stdin is not None
                for i in range(0, len(payload), 300_001):  # odd chunk sizes on purpose
                    await proc.stdin.write(payload[i : i + 300_001])
                await proc.stdin.close()

            async def read_err() -> bytes:
                assert proc.stderr is not None
                return await proc.stderr.read()

            feeder = asyncio.create_task(feed())
            err_task = asyncio.create_task(read_err())
            out = await proc.stdout.read()
            await feeder
            seen["out"] = out
            seen["err"] = await err_task
            seen["code"] = await proc.wait()

    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await session.do(solver.build(_rootfs(buildkit_busybox_rootfs), on_result=handler))
    assert seen["code"] == 0
    out = seen["out"]
    assert isinstance(out, bytes)
    assert len(out) == len(payload)
    assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
    assert seen["err"] == b"to-stderr\n"


async def test_signals_reach_the_process_and_an_exec_joins_the_init(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    solver = Solver()
    seen: dict[str, object] = {}

    async def handler(result: Result) -> None:
        async with result.container() as ctr:
            init = await ctr.start(
                ["/bin/sh", "-c", "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 1; done"],
                stdout="pipe",
            )
            assert init.stdout is not None
            assert await init.stdout.read(6) == b"ready\n"
            with pytest.raises(ContainerError):
                await init.resize(24, 80)  # no TTY
            # A second process is an exec into the running container: it sees the init.
            peer = await ctr.run(["/bin/sh", "-c", "ps | grep -c 'while'"], check=False)
            seen["peer"] = peer
            await init.signal("TERM")
            seen["code"] = await init.wait()
            seen["rest"] = await init.stdout.read()
            with pytest.raises(ContainerError):
                await ctr.start(["/bin/true"])

    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await session.do(solver.build(_rootfs(buildkit_busybox_rootfs), on_result=handler))
    peer = seen["peer"]
    assert isinstance(peer, ProcessResult)
    assert peer.exit_code == 0
    assert int(peer.stdout) >= 1
    assert seen["code"] == 9
    assert seen["rest"] == b"got-term\n"


async def test_setup_and_teardown_hooks_run_when_the_process_fails(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    calls: list[object] = []

    async def setup(process: Process) -> None:
        calls.append(("setup", process.args))

    async def teardown(result: ProcessResult | None) -> None:
        calls.append(("teardown", result.exit_code if result else None))

    solver = Solver()
    request = solver.container(
        _rootfs(buildkit_busybox_rootfs), ["/bin/sh", "-c", "exit 5"], setup=[setup], teardown=[teardown]
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(ContainerExitError):
            await session.do(request)
    assert calls == [("setup", ("/bin/sh", "-c", "exit 5")), ("teardown", 5)]


async def test_on_error_scripted_captures_the_failed_steps_files_and_exit_code(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    """The failing exec is deep in the graph: two more steps follow it."""
    base = _rootfs(buildkit_busybox_rootfs)
    failing = base.run(
        ["/bin/sh", "-c", "echo written-before-failing > /state.txt; echo out > /out/o; exit 7"],
        mounts=[llb.bind("/out", llb.scratch())],
    ).root
    graph = failing.run(["/bin/true"]).root.mkfile("/after", b"x")
    solver = Solver()
    on_error = OnError(commands=["cat /state.txt", ["/bin/cat", "/out/o"], "exit 3"])
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(SolveError) as info:
            await session.do(solver.build(graph, on_error=on_error))
        dropped = await session.do(
            solver.build(graph, on_error=OnError(commands=["cat /state.txt"], drop_error=True))
        )
    err = info.value
    assert err.exit_code == 7
    assert [r.exit_code for r in err.debug] == [0, 0, 3]
    assert err.debug[0].stdout == b"written-before-failing\n"
    assert err.debug[1].stdout == b"out\n"
    assert dropped.error is not None
    assert dropped.error.exit_code == 7
    assert dropped.debug[0].stdout == b"written-before-failing\n"


async def test_on_error_on_a_file_op_failure_keeps_the_error(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    graph = _rootfs(buildkit_busybox_rootfs).copy(llb.scratch(), "/missing", "/x")
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(SolveError) as info:
            await session.do(solver.build(graph, on_error=OnError(commands=["true"], drop_error=True)))
    assert info.value.debug == ()


async def test_eight_concurrent_container_requests_and_one_failing_with_on_error_beside_them(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    root = _rootfs(buildkit_busybox_rootfs)
    solver = Solver()
    requests = [solver.container(root, ["/bin/sh", "-c", f"echo container-{i}"]) for i in range(8)]
    failing = solver.build(
        root.run(["/bin/sh", "-c", "echo boom > /b; exit 4"]).root,
        on_error=OnError(commands=["cat /b"]),
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        outcomes = await asyncio.gather(
            *(session.do(r) for r in [*requests, failing]), return_exceptions=True
        )
    for i, outcome in enumerate(outcomes[:8]):
        assert isinstance(outcome, llblib_async.SolveResult), outcome
        assert outcome.container is not None
        assert outcome.container.stdout == f"container-{i}\n".encode()
    err = outcomes[8]
    assert isinstance(err, SolveError)
    assert err.exit_code == 4
    assert err.debug[0].stdout == b"boom\n"


async def test_bad_container_options_raise_typed_errors() -> None:
    with pytest.raises(ContainerError) as info:
        llblib_async.ContainerOptions(env=["A=1"])  # type: ignore[arg-type]
    assert info.value.option == "env"
    with pytest.raises(ContainerError):
        OnError(commands=[[]])
    with pytest.raises(ContainerError):
        OnError(shell=())
    with pytest.raises(TypeError):
        Solver().build(llb.scratch(), on_error="shell")  # type: ignore[arg-type]


async def test_keep_mounts_turn_a_containers_writable_mounts_into_states(
    tmp_path: Path, buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    root = _rootfs(buildkit_busybox_rootfs)
    work = llb.scratch().mkfile("/seed.txt", b"seed\n")
    solver = Solver()
    request = solver.container(
        root,
        ["/bin/sh", "-c", "echo changed > /work/new.txt; mkdir -p /work/d; ln -s ../new.txt /work/d/link; "
         "chmod 750 /work/d; echo rootfile > /made-in-root; exit 2"],
        mounts=[llb.bind("/work", work)],
        keep_mounts={"/work": tmp_path / "work", "/": tmp_path / "root"},
        check=False,
    )  # fmt: skip
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        done = await session.do(request)
        assert done.container is not None
        assert done.container.exit_code == 2
        # A later request uses what the container changed.
        later = await session.do(
            solver.container(root, ["/bin/sh", "-c", "cat /w/seed.txt /w/new.txt /w/d/link"],
                             mounts=[llb.bind("/w", done.mounts["/work"])])
        )  # fmt: skip
    assert later.container is not None
    assert later.container.stdout == b"seed\nchanged\nchanged\n"
    assert (tmp_path / "work" / "new.txt").read_text() == "changed\n"
    assert os.readlink(tmp_path / "work" / "d" / "link") == "../new.txt"
    assert (tmp_path / "work" / "d").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "root" / "made-in-root").read_text() == "rootfile\n"


async def test_secret_and_forwarded_socket_mounts_and_file_object_streams(
    tmp_path: Path, buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    import io

    from llblib_async import Secret, Secrets, SocketForwards

    server = await asyncio.start_unix_server(lambda r, w: w.close(), str(tmp_path / "fwd.sock"))
    solver = Solver()
    solver.add_attachable(Secrets({"token": Secret.from_bytes(b"s3cret")}))
    solver.add_attachable(SocketForwards({"fwd": tmp_path / "fwd.sock"}))
    out = io.BytesIO()
    request = solver.container(
        _rootfs(buildkit_busybox_rootfs),
        [
            "/bin/sh",
            "-c",
            "cat /run/secrets/token; echo; echo $TOKEN; test -S /run/fwd.sock && echo socket; cat",
        ],
        mounts=[llb.secret_mount("/run/secrets/token", id="token"), llb.ssh_mount("/run/fwd.sock", id="fwd")],
        secret_env={"TOKEN": "token"},
        stdin=io.BytesIO(b"from a file object\n"),
        stdout=out,
    )
    try:
        async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
            result = await session.do(request)
    finally:
        server.close()
    assert result.container is not None
    assert result.container.exit_code == 0
    assert out.getvalue() == b"s3cret\ns3cret\nsocket\nfrom a file object\n"
    assert result.container.stdout == b""  # it went to the file object


async def test_cancelling_a_container_request_releases_the_container(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    marker = f"sleep-{os.urandom(4).hex()}"
    started = asyncio.Event()
    torn_down: list[ProcessResult | None] = []

    async def setup(process: Process) -> None:
        started.set()

    async def teardown(result: ProcessResult | None) -> None:
        torn_down.append(result)

    solver = Solver()
    request = solver.container(
        _rootfs(buildkit_busybox_rootfs),
        ["/bin/sh", "-c", f"sleep 1000; echo {marker}"],
        setup=[setup],
        teardown=[teardown],
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        task = asyncio.create_task(session.do(request))
        async with asyncio.timeout(120):  # a hang guard
            await started.wait()
        await until(lambda: processes_with(marker), "the container's process should be running", timeout=120)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(
            lambda: not processes_with(marker),
            "the cancelled container's process should be gone",
            timeout=120,
        )
        # The session goes on.
        after = await session.do(solver.container(_rootfs(buildkit_busybox_rootfs), ["echo", "next"]))
    assert torn_down == [None]
    assert after.container is not None
    assert after.container.stdout == b"next\n"


async def test_on_error_remakes_cache_tmpfs_and_read_only_mounts_of_the_failed_step(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    cache_id = f"onerr-{os.urandom(4).hex()}"
    ro = llb.scratch().mkfile("/f", b"read-only input\n")
    failing = _rootfs(buildkit_busybox_rootfs).run(
        ["/bin/sh", "-c", "echo cached > /cache/c; echo gone > /tmp/t; exit 1"],
        mounts=[
            llb.cache_mount("/cache", id=cache_id),
            llb.tmpfs("/tmp"),
            llb.bind("/ro", ro, readonly=True),
        ],
        env={"STEP_ENV": "from-the-step"},
        cwd="/ro",
    )
    solver = Solver()
    on_error = OnError(
        commands=["cat /cache/c; ls /tmp | wc -l; cat f; echo $STEP_ENV $EXTRA; pwd; touch /ro/x || echo ro"],
        env={"EXTRA": "added"},
    )
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(SolveError) as info:
            await session.do(solver.build(failing.root, on_error=on_error))
    (run,) = info.value.debug
    assert run.stdout.decode().splitlines() == [
        "cached", "0", "read-only input", "from-the-step added", "/ro", "ro",
    ]  # fmt: skip


async def test_on_error_swaps_the_root_for_a_toolbox_and_adds_mounts(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    """Go's OnError(WithRun(llb.AddMount("/", toolbox), llb.AddMount(...))): the failed
    step's writable mount as it was, a toolbox root instead of the step's own, the pristine
    input beside it and a scratch directory the debugging writes to."""
    source = llb.scratch().mkfile("/file", b"pristine\n")
    failing = _rootfs(buildkit_busybox_rootfs).run(
        ["/bin/sh", "-c", "echo changed > /work/file; echo in-the-step-root > /step-root; exit 4"],
        mounts=[llb.bind("/work", source)],
    )
    toolbox = _rootfs(buildkit_busybox_rootfs).mkfile("/toolbox-marker", b"toolbox\n")
    on_error = OnError(
        commands=[
            "cat /work/file /original/file /toolbox-marker; test -e /step-root || echo no-step-root; "
            "echo found > /findings/note; cat /findings/note; ls /cache | wc -l"
        ],
        root=toolbox,
        mounts=[
            llb.bind("/original", source, readonly=True),
            llb.bind("/findings", llb.scratch()),
            llb.cache_mount("/cache", id=f"onerr-extra-{os.urandom(4).hex()}"),
        ],
        drop_error=True,
    )
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        result = await session.do(solver.build(failing.get_mount("/work"), on_error=on_error))
    assert result.error is not None
    assert result.error.exit_code == 4
    (run,) = result.debug
    assert run.exit_code == 0, run.stderr
    assert run.stdout.decode().splitlines() == [
        "changed", "pristine", "toolbox", "no-step-root", "found", "0",
    ]  # fmt: skip


async def test_on_error_extra_mounts_are_checked() -> None:
    with pytest.raises(ContainerError, match="root="):
        OnError(mounts=[llb.bind("/", llb.scratch())])
    with pytest.raises(ContainerError, match=r"llb\.State"):
        OnError(root="busybox")  # type: ignore[arg-type]


async def test_a_container_on_a_failing_root_raises_the_build_error(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    root = _rootfs(buildkit_busybox_rootfs).run(["/bin/sh", "-c", "echo bad root; exit 3"]).root
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(SolveError) as info:
            await session.do(solver.container(root, ["true"]))
    assert info.value.exit_code == 3
    assert "bad root" in info.value.logs


async def test_a_tty_process_merges_output_and_takes_resizes(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    solver = Solver()
    seen: dict[str, object] = {}

    async def handler(result: Result) -> None:
        async with result.container() as ctr:
            proc = await ctr.start(["/bin/sh"], tty=True, stdin="pipe", stdout="pipe")
            assert proc.stdin is not None
            assert proc.stdout is not None
            assert proc.stderr is None
            await proc.resize(40, 120)
            await proc.stdin.write(b"stty size; echo $TERM; echo to-err >&2; exit 3\n")
            seen["out"] = await proc.stdout.read()
            seen["code"] = await proc.wait()

    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        await session.do(solver.build(_rootfs(buildkit_busybox_rootfs), on_result=handler))
    out = seen["out"]
    assert isinstance(out, bytes)
    assert b"40 120\r\n" in out
    assert b"xterm\r\n" in out
    assert b"to-err\r\n" in out
    assert seen["code"] == 3


async def test_a_process_the_daemon_cannot_start_says_why(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(ContainerExitError) as info:
            await session.do(solver.container(_rootfs(buildkit_busybox_rootfs), ["true"], user="nosuchuser"))
    assert "nosuchuser" in info.value.result.error
    assert "nosuchuser" in str(info.value)


async def test_stdin_the_process_leaves_unread_is_a_clear_error_and_the_session_goes_on(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    """BuildKit ends the process's stream when stdin cannot be written (the process exited)."""
    root = _rootfs(buildkit_busybox_rootfs)
    solver = Solver()
    request = solver.container(root, ["/bin/sh", "-c", "head -c 5; exit 0"], stdin=b"x" * (32 << 20))
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        outcome: llblib_async.SolveResult | ContainerError
        try:
            outcome = await session.do(request)
        except ContainerError as err:
            outcome = err
        if isinstance(outcome, ContainerError):  # the usual outcome: the stream ended, the status lost
            assert outcome.option == "stdin"
        else:  # the daemon's Exit won the race against its failing stdin write
            assert outcome.container is not None
            assert (outcome.container.exit_code, outcome.container.stdout) == (0, b"xxxxx")
        after = await session.do(solver.container(root, ["echo", "still here"]))
    assert after.container is not None
    assert after.container.stdout == b"still here\n"


@pytest.mark.parametrize("derived", [False, True], ids=["dockerfile", "state-built-on-it"])
async def test_on_error_debugs_a_failing_dockerfile_run(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: object, derived: bool
) -> None:
    """Whatever made the failing exec (here the Dockerfile frontend), OnError reads it from the error."""
    base = buildkit_busybox_image.ref  # type: ignore[attr-defined]
    text = (
        f"FROM {base}\nWORKDIR /app\nRUN echo data > file.txt\n"
        "RUN echo partial > /app/p.txt && exit 6\nRUN true\n"
    )
    st = llb.dockerfile(text)
    if derived:
        st = st.file(llb.mkfile("/x", b"y"))
    solver = Solver()
    async with llblib_async.connect(buildkit_daemon.address) as client, solver.session(client) as session:
        with pytest.raises(SolveError) as info:
            await session.do(solver.build(st, on_error=OnError(commands=["cat file.txt p.txt; pwd"])))
    err = info.value
    assert err.exit_code == 6
    (run,) = err.debug
    assert run.stdout == b"data\npartial\n/app\n"


async def test_client_solve_takes_on_error_too(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_rootfs: Path
) -> None:
    """What a CLI's ``--debug-on-error`` passes: ``client.solve(..., on_error=OnError(...))``."""
    failing = _rootfs(buildkit_busybox_rootfs).run(["/bin/sh", "-c", "echo seen > /s; exit 2"]).root
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(failing, on_error=OnError(commands=["cat /s"], drop_error=True))
    assert result.error is not None
    assert result.error.exit_code == 2
    assert result.debug[0].stdout == b"seen\n"
