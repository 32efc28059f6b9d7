"""The test infrastructure itself: binaries cache, buildkitd, registry, busybox rootfs, dockerd.

These prove the fixtures hand out *real*, isolated daemons and that stopping one leaves
nothing behind - not even after the daemon was SIGKILLed in the middle of running a
container, which is exactly when buildkitd and dockerd leave mounts and processes around.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import grpclib.client
import pytest

from llblib_async._pb.moby.buildkit import v1 as control
from llblib_async.errors import DaemonUnreachableError
from llblib_async.testing import (
    BUILDKIT_VERSION,
    BuildkitBinaries,
    BuildkitDaemon,
    DockerDaemon,
    PrerequisiteError,
    Registry,
    _proc,
    binaries,
    default_buildkit_version,
    default_cache_dir,
    ensure_buildkit_binaries,
)

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io 20.10 CLI: builds with BuildKit without buildx


# ---------------------------------------------------------------------------------------
# helpers


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def runc_containers_under(path: Path, root: str = "/run/runc") -> list[dict[str, object]]:
    if not os.path.isdir(root):
        return []
    out = subprocess.run(
        ["/usr/sbin/runc", "--root", root, "list", "--format", "json"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return [c for c in json.loads(out or b"null") or [] if str(c["bundle"]).startswith(str(path) + "/")]


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Read a child's stderr until ``marker`` shows up (the event we wait for), or fail."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                pytest.fail(
                    f"{marker!r} did not appear within {timeout}s; output:\n{seen.decode(errors='replace')}"
                )
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                pytest.fail(f"output ended before {marker!r}:\n{seen.decode(errors='replace')}")
            seen += chunk
    return seen


def rootfs_context(rootfs: Path, dest: Path, dockerfile: str) -> Path:
    """A build context: the busybox rootfs under rootfs/ and a Dockerfile."""
    shutil.copytree(rootfs, dest / "rootfs", symlinks=True)
    (dest / "Dockerfile").write_text(dockerfile)
    return dest


def overlay_mounts_in(directory: Path) -> bool:
    """Whether this kernel/filesystem lets us mount an overlay inside ``directory``."""
    probe = directory / f"llblib-overlay-probe-{os.getpid()}"
    try:
        for sub in ("lower", "upper", "work", "merged"):
            (probe / sub).mkdir(parents=True)
        options = f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(probe / "merged")], capture_output=True
        )
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", str(probe / "merged")], check=True)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


async def list_workers(channel: grpclib.client.Channel) -> control.ListWorkersResponse:
    try:
        return await control.ControlStub(channel).list_workers(control.ListWorkersRequest(), timeout=10)
    finally:
        channel.close()


# ---------------------------------------------------------------------------------------
# version pin and binaries cache (no daemons)


def test_default_buildkit_version_equals_pins_toml() -> None:
    pins = tomllib.loads((REPO / "proto" / "pins.toml").read_text())
    assert pins["go"]["buildkit"] == BUILDKIT_VERSION


def test_version_env_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLBLIB_BUILDKIT_VERSION", raising=False)
    assert default_buildkit_version() == BUILDKIT_VERSION
    monkeypatch.setenv("LLBLIB_BUILDKIT_VERSION", "v0.99.1")
    assert default_buildkit_version() == "v0.99.1"


def test_cache_dir_follows_llblib_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLBLIB_CACHE_DIR", str(tmp_path))
    assert default_cache_dir("v1.2.3") == tmp_path / "buildkit-v1.2.3" / "bin"
    monkeypatch.delenv("LLBLIB_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir("v1.2.3") == Path.home() / ".cache" / "llblib-async" / "buildkit-v1.2.3" / "bin"


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def no_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(binaries, "GO_FALLBACKS", ())


@pytest.mark.usefixtures("no_go")
def test_complete_cache_is_reused_without_go(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    cache.mkdir()
    for name in ("buildkitd", "buildctl"):
        write_executable(cache / name, "#!/bin/sh\n")
    found = ensure_buildkit_binaries("v0.1.0", cache)
    assert found == BuildkitBinaries("v0.1.0", cache / "buildkitd", cache / "buildctl")


@pytest.mark.usefixtures("no_go")
def test_missing_go_fails_with_install_instructions(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    cache.mkdir()
    write_executable(cache / "buildkitd", "#!/bin/sh\n")  # buildctl missing: incomplete
    with pytest.raises(PrerequisiteError, match=r"go\.dev/dl"):
        ensure_buildkit_binaries("v0.1.0", cache)


def fake_go(bin_dir: Path, source: Path, *, fail_after_first_binary: bool) -> None:
    """A `go` that answers `mod download -json` and 'builds' shell scripts (optionally failing halfway)."""
    bin_dir.mkdir()
    source.mkdir()
    fail = 'echo "compile error: boom" >&2; exit 2' if fail_after_first_binary else ":"
    write_executable(
        bin_dir / "go",
        f"""#!/bin/sh
case "$1" in
mod) echo '{{"Path": "github.com/moby/buildkit", "Dir": "{source}"}}' ;;
build)
  [ "$(pwd)" = "{source}" ] || {{ echo "built outside the module dir" >&2; exit 3; }}
  while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done
  printf '#!/bin/sh\\necho buildkitd\\n' > "$out/buildkitd"; chmod +x "$out/buildkitd"
  {fail}
  printf '#!/bin/sh\\necho buildctl\\n' > "$out/buildctl"; chmod +x "$out/buildctl" ;;
*) exit 1 ;;
esac
""",
    )


def test_interrupted_build_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_go(tmp_path / "gobin", tmp_path / "src", fail_after_first_binary=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'gobin'}:/usr/bin:/bin")
    assert shutil.which("go") == str(tmp_path / "gobin" / "go")
    cache = tmp_path / "cache" / "buildkit-v0.1.0" / "bin"
    with pytest.raises(PrerequisiteError, match="compile error: boom"):
        ensure_buildkit_binaries("v0.1.0", cache)
    assert not cache.exists()
    assert [p.name for p in cache.parent.iterdir()] == [".bin.lock"], "no staging directory left behind"


def test_build_is_moved_into_place_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_go(tmp_path / "gobin", tmp_path / "src", fail_after_first_binary=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'gobin'}:/usr/bin:/bin")
    assert shutil.which("go") == str(tmp_path / "gobin" / "go")
    cache = tmp_path / "cache" / "buildkit-v0.1.0" / "bin"
    found = ensure_buildkit_binaries("v0.1.0", cache)
    assert sorted(p.name for p in cache.iterdir()) == ["buildctl", "buildkitd"]
    assert subprocess.run([found.buildkitd], capture_output=True, check=True).stdout == b"buildkitd\n"


def test_bogus_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a BuildKit release"):
        ensure_buildkit_binaries("main; rm -rf /", Path("/nonexistent"))


def test_real_binaries_report_the_pinned_version(buildkit_binaries: BuildkitBinaries) -> None:
    out = subprocess.run(
        [buildkit_binaries.buildkitd, "--version"], capture_output=True, text=True, check=True
    )
    assert buildkit_binaries.version in out.stdout.split()


# ---------------------------------------------------------------------------------------
# buildkitd


async def test_buildkitd_answers_list_workers_with_the_oci_worker(buildkit_daemon: BuildkitDaemon) -> None:
    response = await list_workers(grpclib.client.Channel(path=str(buildkit_daemon.socket_path)))
    [worker] = response.record
    assert worker.labels["org.mobyproject.buildkit.worker.executor"] == "oci"
    assert worker.labels["org.mobyproject.buildkit.worker.network"] == "host"
    assert worker.id == buildkit_daemon.worker_id
    assert buildkit_daemon.address == f"unix://{buildkit_daemon.socket_path}"
    assert buildkit_daemon.socket_path.is_relative_to(buildkit_daemon.workdir)


def test_buildkitd_uses_overlayfs_exactly_when_overlay_mounts_work(buildkit_daemon: BuildkitDaemon) -> None:
    expected = "overlayfs" if overlay_mounts_in(buildkit_daemon.workdir.parent) else "native"
    assert buildkit_daemon.snapshotter == expected


def test_buildkit_address_is_the_session_daemon_unless_one_is_given(request: pytest.FixtureRequest) -> None:
    external = request.config.getoption("llblib_buildkit_addr") or os.environ.get("LLBLIB_BUILDKIT_ADDR")
    address = request.getfixturevalue("buildkit_address")
    if external:
        assert address == external
    else:
        assert address == request.getfixturevalue("buildkit_daemon").address


def test_stop_after_kill_mid_exec_removes_containers_mounts_and_dir(
    buildkit_binaries: BuildkitBinaries, buildkit_busybox_rootfs: Path, tmp_path: Path
) -> None:
    ctx = rootfs_context(
        buildkit_busybox_rootfs,
        tmp_path / "ctx",
        "FROM scratch\nCOPY rootfs/ /\nRUN echo container-$((6 * 7)) && exec sleep 300\n",
    )
    daemon = BuildkitDaemon.start(binaries=buildkit_binaries)
    build = subprocess.Popen(
        [buildkit_binaries.buildctl, "--addr", daemon.address, "build", "--frontend", "dockerfile.v0",
         "--local", f"context={ctx}", "--local", f"dockerfile={ctx}", "--progress", "plain"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # The step's name shows the unexpanded command; "container-42" only comes from its output.
        read_until(build, b"container-42", timeout=60)
        [container] = runc_containers_under(daemon.workdir)
        container_pid = int(str(container["pid"]))
        daemon.kill()
        assert not daemon.is_running()
        assert daemon.returncode() == -signal.SIGKILL
        # What a crashed buildkitd leaves: the build container still runs, its rootfs mounted.
        assert process_alive(container_pid)
        assert mounts_under(daemon.workdir)
        daemon.stop()
        assert not process_alive(container_pid)
        assert runc_containers_under(daemon.workdir) == []
        assert mounts_under(daemon.workdir) == []
        assert not daemon.workdir.exists()
        assert build.wait(timeout=30) != 0
    finally:
        build.kill()
        build.wait()
        daemon.stop()


async def test_two_daemons_side_by_side_one_with_an_extra_tcp_listener(
    buildkit_binaries: BuildkitBinaries,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Start and stop in a thread: stop() blocks until buildkitd exits, and buildkitd's
    # graceful stop waits for client connections this event loop still has to close.
    first = await asyncio.to_thread(BuildkitDaemon.start, binaries=buildkit_binaries)
    try:
        second = await asyncio.to_thread(
            BuildkitDaemon.start, binaries=buildkit_binaries, extra_args=["--addr", f"tcp://127.0.0.1:{port}"]
        )
        try:
            assert first.pid != second.pid
            assert first.workdir != second.workdir
            over_unix = await list_workers(grpclib.client.Channel(path=str(second.socket_path)))
            over_tcp = await list_workers(grpclib.client.Channel("127.0.0.1", port))
            other = await list_workers(grpclib.client.Channel(path=str(first.socket_path)))
            assert [w.id for w in over_tcp.record] == [w.id for w in over_unix.record] == [second.worker_id]
            assert [w.id for w in other.record] == [first.worker_id] != [second.worker_id]
            assert second.address == f"unix://{second.socket_path}"
        finally:
            await asyncio.to_thread(second.stop)
            assert second.returncode() not in (None, -signal.SIGKILL), "a clean SIGTERM stop"
    finally:
        await asyncio.to_thread(first.stop)
    assert not first.workdir.exists()
    assert not second.workdir.exists()


def test_failed_start_raises_with_the_log_tail_and_cleans_up(buildkit_binaries: BuildkitBinaries) -> None:
    with pytest.raises(DaemonUnreachableError) as info:
        BuildkitDaemon.start(binaries=buildkit_binaries, extra_args=["--no-such-flag"], timeout=20)
    assert "flag provided but not defined" in str(info.value)
    workdir = Path(info.value.address.removeprefix("unix://")).parent
    assert workdir.name.startswith("llblib-buildkitd-")
    assert not workdir.exists()


# ---------------------------------------------------------------------------------------
# registry


def http_get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str]]:
    import base64
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", parts.path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def test_registry_answers_v2(buildkit_registry: Registry) -> None:
    status, headers = http_get(f"http://{buildkit_registry.host}/v2/")
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert buildkit_registry.host.startswith("127.0.0.1:")


def test_auth_registry_requires_the_right_password(buildkit_auth_registry: Registry) -> None:
    assert buildkit_auth_registry.auth is not None
    user, password = buildkit_auth_registry.auth
    assert http_get(f"{buildkit_auth_registry.url}/v2/")[0] == 401
    assert http_get(f"{buildkit_auth_registry.url}/v2/", (user, password + "x"))[0] == 401
    assert http_get(f"{buildkit_auth_registry.url}/v2/", (user, password))[0] == 200


def test_registry_stop_frees_the_port_and_storage() -> None:
    reg = Registry.start()
    workdir, port = reg.workdir, reg.port
    reg.stop()
    assert not workdir.exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nobody listens there any more


# ---------------------------------------------------------------------------------------
# busybox rootfs


def test_busybox_rootfs_runs_sh_as_root(buildkit_busybox_rootfs: Path) -> None:
    assert (buildkit_busybox_rootfs / "bin" / "sh").is_symlink()
    assert (buildkit_busybox_rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    out = subprocess.run(
        ["chroot", str(buildkit_busybox_rootfs), "/bin/sh", "-c", "id -un; id -gn nobody; echo $((6 * 7))"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert out.stdout.split() == ["root", "nobody", "42"]


# ---------------------------------------------------------------------------------------
# dockerd


def docker(daemon: DockerDaemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not os.access(DOCKER_CLI, os.X_OK):
        pytest.fail(f"{DOCKER_CLI} missing: `apt-get install -y docker.io`", pytrace=False)
    env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_BUILDKIT="1", DOCKER_CONFIG="/nonexistent")
    return subprocess.run([DOCKER_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_dockerd_pings_with_buildkit_enabled(buildkit_dockerd: DockerDaemon) -> None:
    raw = socket.socket(socket.AF_UNIX)
    raw.settimeout(10)
    with raw:
        raw.connect(str(buildkit_dockerd.socket_path))
        raw.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert body == b"OK"
    assert b"\r\nBuilder-Version: 2\r\n" in head + b"\r\n"
    assert buildkit_dockerd.host == f"unix://{buildkit_dockerd.socket_path}"
    info = json.loads(docker(buildkit_dockerd, "info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(buildkit_dockerd.data_root)


@pytest.fixture
def docker_context(buildkit_busybox_rootfs: Path, tmp_path: Path) -> Path:
    return rootfs_context(
        buildkit_busybox_rootfs,
        tmp_path / "ctx",
        "FROM scratch\nCOPY rootfs/ /\nRUN echo on-$(ls /sys/class/net | grep -v lo)-network > /net.txt\n",
    )


def test_dockerd_embedded_buildkit_runs_a_step_on_the_private_bridge(
    buildkit_dockerd: DockerDaemon, docker_context: Path
) -> None:
    built = docker(
        buildkit_dockerd, "build", "--progress", "plain", "-t", "llblib-fixture:bridge", str(docker_context)
    )
    assert built.returncode == 0, built.stderr
    ran = docker(buildkit_dockerd, "run", "--rm", "llblib-fixture:bridge", "cat", "/net.txt")
    assert ran.stdout == "on-eth0-network\n", ran.stderr
    assert buildkit_dockerd.bridge is not None
    assert Path(f"/sys/class/net/{buildkit_dockerd.bridge}").exists()


def test_dockerd_stop_after_kill_removes_containers_mounts_bridge_and_dir(
    buildkit_busybox_rootfs: Path,
) -> None:
    daemon = DockerDaemon.start()
    try:
        tar = subprocess.run(
            ["tar", "-C", str(buildkit_busybox_rootfs), "-c", "."], capture_output=True, check=True
        )
        env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG="/nonexistent")
        subprocess.run(
            [DOCKER_CLI, "import", "-", "bb:1"], input=tar.stdout, env=env, check=True, capture_output=True
        )
        cid = docker(daemon, "run", "-d", "bb:1", "sleep", "300").stdout.strip()
        container_pid = int(docker(daemon, "inspect", "-f", "{{.State.Pid}}", cid).stdout)
        assert process_alive(container_pid)
        daemon.kill()
        assert process_alive(container_pid), "a killed dockerd leaves its containers running"
        assert mounts_under(daemon.workdir)
        assert daemon.bridge is not None
        bridge = Path(f"/sys/class/net/{daemon.bridge}")
        daemon.stop()
        assert not process_alive(container_pid)
        assert mounts_under(daemon.workdir) == []
        assert not daemon.workdir.exists()
        assert not bridge.exists()
    finally:
        daemon.stop()


# ---------------------------------------------------------------------------------------
# crash safety net


def test_leftovers_of_a_dead_test_run_are_reaped_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan_dir = _proc.make_instance_dir("registry")
    live_dir = _proc.make_instance_dir("registry")
    try:
        record = json.loads((orphan_dir / _proc.OWNER_FILE).read_text())
        (orphan_dir / _proc.OWNER_FILE).write_text(json.dumps(dict(record, pid=dead.pid)))
        # What a SIGKILLed test run leaves: a daemon still running and a mount.
        (orphan_dir / "mnt").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(orphan_dir / "mnt")], check=True)
        config = orphan_dir / "config.yml"
        storage = {"filesystem": {"rootdirectory": str(orphan_dir / "data")}}
        config.write_text(json.dumps({"version": "0.1", "http": {"addr": "127.0.0.1:0"}, "storage": storage}))
        daemon = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # A process that mentions the directory but is no daemon (think: an editor, a client).
        bystander = subprocess.Popen(["tail", "-f", str(config)], stdout=subprocess.DEVNULL)
        try:
            _proc.reap_stale_instances()
            assert daemon.wait(timeout=15) == -9
            assert bystander.poll() is None
            assert mounts_under(orphan_dir) == []
            assert not orphan_dir.exists()
            assert live_dir.exists(), "a directory whose owner is alive is not touched"
        finally:
            daemon.kill()
            daemon.wait()
            bystander.kill()
            bystander.wait()
    finally:
        for path in (orphan_dir, live_dir):
            _proc.cleanup_instance(path)


def test_a_dockerd_orphaned_by_a_dead_run_is_reaped_with_containers_and_bridge(
    buildkit_busybox_rootfs: Path,
) -> None:
    daemon = DockerDaemon.start()
    try:
        tar = subprocess.run(
            ["tar", "-C", str(buildkit_busybox_rootfs), "-c", "."], capture_output=True, check=True
        )
        env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG="/nonexistent")
        subprocess.run(
            [DOCKER_CLI, "import", "-", "bb:1"], input=tar.stdout, env=env, check=True, capture_output=True
        )
        cid = docker(daemon, "run", "-d", "bb:1", "sleep", "300").stdout.strip()
        container_pid = int(docker(daemon, "inspect", "-f", "{{.State.Pid}}", cid).stdout)
        dead = subprocess.Popen(["true"])
        dead.wait()
        record = json.loads((daemon.workdir / _proc.OWNER_FILE).read_text())
        (daemon.workdir / _proc.OWNER_FILE).write_text(json.dumps(dict(record, pid=dead.pid)))
        assert daemon.bridge is not None
        bridge = Path(f"/sys/class/net/{daemon.bridge}")

        _proc.reap_stale_instances()

        assert not daemon.is_running()
        assert not process_alive(container_pid)
        assert mounts_under(daemon.workdir) == []
        assert not daemon.workdir.exists()
        assert not bridge.exists()
    finally:
        daemon.stop()
