"""Process, mount and scratch-directory plumbing shared by the daemon helpers.

Every daemon started by :mod:`llblib_async.testing` lives in its own *instance directory*
``<base>/llblib-<kind>-XXXXXXXX`` (state, sockets, config, log).  Cleaning up a daemon is
therefore "make everything that refers to that directory go away": the daemon process,
helpers that outlived it (runc containers, shims), mounts left below it (buildkitd leaves
overlay mounts when it is SIGKILLed) and finally the directory itself.

Each instance directory carries an owner record (pid and start time of the Python process
that made it).  When that process is gone - a test run killed with SIGKILL, a CI job
cancelled - the next start reaps the leftovers, so crashes do not accumulate mounts and
gigabytes under ``/var/tmp``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import http.client
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from .prerequisite import PrerequisiteError

log = logging.getLogger("llblib_async.testing")
T = TypeVar("T")

BASE_DIR_ENV = "LLBLIB_TEST_TMPDIR"
# /var/tmp rather than /tmp: /tmp is a tmpfs on many systems (RAM-backed, small, and
# overlayfs upper dirs on tmpfs need a recent kernel), while /var/tmp sits on the root disk.
DEFAULT_BASE_DIR = Path("/var/tmp")
INSTANCE_PREFIX = "llblib-"
OWNER_FILE = "llblib-owner.json"

RUNC = "/usr/sbin/runc"
# In a buildkitd instance directory: a symlink to the runc that daemon runs (maybe a built
# one, see binaries.ensure_runc), so that cleanup - even by a later process - uses it.
INSTANCE_RUNC = "runc"
# Daemons look their helpers up on PATH (dockerd: containerd, runc, docker-init); a pytest
# started from a minimal environment may lack the sbin directories.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# sun_path is 108 bytes including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107
# Variables that would make a child daemon talk to *our* supervisor (systemd socket
# activation / readiness notification) instead of behaving as a private process.
_SCRUBBED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
# The runc state root used by buildkitd's OCI worker and by dockerd's embedded BuildKit:
# both call runc without --root.  (dockerd's own containers use <exec-root>/runtime-runc/moby.)
DEFAULT_RUNC_ROOTS: tuple[str, ...] = ("/run/runc",)

_MNT_DETACH = 2
_INSTALL_HINT = "run `python -m llblib_async.testing.provision tests` (as root on Debian it installs it) or"


def base_dir() -> Path:
    """Where instance directories are created: ``$LLBLIB_TEST_TMPDIR`` or ``/var/tmp``."""
    return Path(os.environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)


def require_root(what: str) -> None:
    """Fail early and clearly: the daemons need real mounts, namespaces and cgroups."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            f"{what} needs root (real overlay mounts, namespaces and cgroups); run the tests as root, "
            "e.g. `sudo -E .venv/bin/python -m pytest` or in the CI machine"
        )


def require_program(path_or_name: str, package: str, what: str) -> str:
    """Return the absolute path of a program, or raise with the apt command that installs it."""
    if os.path.isabs(path_or_name):
        found: str | None = path_or_name if os.access(path_or_name, os.X_OK) else None
    else:
        found = shutil.which(path_or_name, path=os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH)
    if found is None:
        raise PrerequisiteError(
            f"{what} needs {path_or_name}, which is missing; {_INSTALL_HINT} "
            f"`apt-get install -y --no-install-recommends {package}`"
        )
    return found


def child_env(extra: Mapping[str, str] | None = None, *, drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """The environment for a daemon: ours, minus supervisor hooks, with the sbin dirs on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_ENV and not any(k.startswith(p) for p in drop_prefixes)
    }
    env["PATH"] = env.get("PATH", "") + os.pathsep + SYSTEM_PATH if env.get("PATH") else SYSTEM_PATH
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# instance directories and their owners


def _proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a process, to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie is as good as gone
    return int(fields[19])


def _owner_alive(record: Mapping[str, Any]) -> bool:
    pid, start = record.get("pid"), record.get("start")
    if not isinstance(pid, int):
        return False
    return _proc_start_time(pid) == start


def make_instance_dir(kind: str) -> Path:
    """Create a fresh private instance directory and record its owner (this process)."""
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{INSTANCE_PREFIX}{kind}-", dir=base))
    update_owner_record(path)
    return path


def update_owner_record(path: Path, **extra: Any) -> None:
    """(Re)write the owner record; ``extra`` lists resources outside the dir (e.g. bridges)."""
    record: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((path / OWNER_FILE).read_text())
    record.update(pid=os.getpid(), start=_proc_start_time(os.getpid()), **extra)
    tmp = path / (OWNER_FILE + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path / OWNER_FILE)


def check_socket_path(path: Path) -> None:
    """A unix socket path longer than sun_path fails deep inside the daemon: fail here instead."""
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH:
        raise PrerequisiteError(
            f"socket path {path} is longer than {MAX_UNIX_SOCKET_PATH} bytes; "
            f"set {BASE_DIR_ENV} to a shorter directory"
        )


def reap_stale_instances() -> None:
    """Clean up instance directories whose owning process no longer exists."""
    base = base_dir()
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(INSTANCE_PREFIX) and p.is_dir()]
    except OSError:
        return
    for path in candidates:
        try:
            record = json.loads((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        if not isinstance(record, dict) or _owner_alive(record):
            continue
        log.warning("reaping %s left behind by dead process %s", path, record.get("pid"))
        errors = cleanup_instance(path, bridges=record.get("bridges") or ())
        for err in errors:
            log.warning("while reaping %s: %s", path, err)


# --------------------------------------------------------------------------------------
# cleanup: processes, runc containers, mounts, directories


def _decode_mountinfo_path(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountpoints_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, from /proc/self/mountinfo."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = _decode_mountinfo_path(line.split(" ", 5)[4])
            if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
                found.append(mountpoint)
    return found


def unmount_all(path: Path) -> None:
    """Lazily unmount everything below ``path``, deepest first, until nothing is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(10):
        mounts = mountpoints_under(path)
        if not mounts:
            return
        for mountpoint in sorted(set(mounts), key=len, reverse=True):
            if libc.umount2(os.fsencode(mountpoint), _MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):  # already gone with its parent
                    raise OSError(err, f"umount {mountpoint}: {os.strerror(err)}")
    left = mountpoints_under(path)
    if left:
        raise OSError(errno.EBUSY, f"mounts still present under {path}: {left}")


def _mentions(cmdline: str, path: str) -> bool:
    start = cmdline.find(path)
    while start != -1:
        end = start + len(path)
        if end == len(cmdline) or not (cmdline[end].isalnum() or cmdline[end] in "-_."):
            return True
        start = cmdline.find(path, end)
    return False


# Only these are killed when their command line names an instance directory: the
# daemons themselves and the helpers they spawn.  Anything else that happens to mention
# the path (a test's buildctl client, an editor) is left alone.
_DAEMON_EXECUTABLES = frozenset(
    {
        "buildkitd",
        "runc",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v1",
        "containerd-shim-runc-v2",
        "dockerd",
        "docker-proxy",
        "docker-init",
        "tini-static",
        "docker-registry",
    }
)


def _executable_name(pid: str) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return ""


def kill_processes_mentioning(path: Path, timeout: float = 10.0) -> list[int]:
    """SIGKILL daemon processes whose command line names ``path``; wait until they are gone.

    That catches what a killed daemon leaves running - containerd, its shims, runc - and,
    when reaping after a crashed test run, the daemon itself: they all carry the instance
    directory in their arguments.
    """
    me, needle = os.getpid(), str(path)
    victims: dict[int, int | None] = {}
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if _mentions(cmdline, needle) and _executable_name(entry.name) in _DAEMON_EXECUTABLES:
            pid = int(entry.name)
            start = _proc_start_time(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                victims[pid] = start
                killed.append(pid)
    deadline = time.monotonic() + timeout
    while victims and time.monotonic() < deadline:
        victims = {pid: st for pid, st in victims.items() if st is not None and _proc_start_time(pid) == st}
        if victims:
            time.sleep(0.02)  # waiting for the kernel to tear processes down
    if victims:
        raise OSError(errno.EBUSY, f"processes {sorted(victims)} survived SIGKILL for {timeout}s")
    if killed:
        log.info("killed leftover processes of %s: %s", path, killed)
    return killed


def delete_runc_containers(path: Path, roots: Iterable[str] = DEFAULT_RUNC_ROOTS) -> list[str]:
    """Force-delete runc containers whose bundle lives below ``path``.

    A SIGKILLed buildkitd does not take its build containers down: the container init is
    re-parented and keeps running (and keeps its rootfs mounted).  ``runc delete --force``
    kills it and removes its state and cgroups.
    """
    recorded = path / INSTANCE_RUNC
    runc = next((str(c) for c in (recorded, Path(RUNC)) if os.access(c, os.X_OK)), None) or shutil.which(
        "runc", path=SYSTEM_PATH
    )
    if runc is None:
        return []
    prefix = str(path).rstrip("/") + "/"
    deleted = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        listing = subprocess.run(
            [runc, "--root", root, "list", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if listing.returncode != 0:
            log.warning("runc --root %s list failed: %s", root, listing.stderr.strip())
            continue
        for container in json.loads(listing.stdout or "null") or []:
            if str(container.get("bundle", "")).startswith(prefix):
                subprocess.run(
                    [runc, "--root", root, "delete", "--force", container["id"]],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                deleted.append(container["id"])
    if deleted:
        log.info("deleted leftover runc containers under %s: %s", path, deleted)
    return deleted


def delete_links(names: Iterable[str]) -> None:
    """Delete network interfaces we created (private bridges); missing ones are fine."""
    ip = shutil.which("ip", path=SYSTEM_PATH)
    for name in names:
        if ip and Path(f"/sys/class/net/{name}").exists():
            subprocess.run([ip, "link", "delete", name], capture_output=True, timeout=30, check=False)


def cleanup_instance(
    path: Path,
    *,
    runc_roots: Iterable[str] = DEFAULT_RUNC_ROOTS,
    bridges: Iterable[str] = (),
) -> list[BaseException]:
    """Remove every trace of an instance; returns the errors instead of stopping at the first."""
    errors: list[BaseException] = []
    # dockerd keeps its containers' runc state inside its exec root: <path>/exec/runtime-runc/moby
    roots = [*runc_roots, *(str(p) for p in path.glob("*/runtime-runc/*") if p.is_dir())]
    steps: list[Callable[[], object]] = [
        lambda: delete_runc_containers(path, roots),
        lambda: kill_processes_mentioning(path),
        lambda: unmount_all(path),
        lambda: delete_links(bridges),
        lambda: shutil.rmtree(path) if path.exists() else None,
    ]
    for step in steps:
        try:
            step()
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            errors.append(err)
    return errors


# --------------------------------------------------------------------------------------
# processes


class Stoppable(Protocol):
    def stop(self) -> None: ...


_live: dict[int, Stoppable] = {}
_live_lock = threading.Lock()


def register_live(obj: Stoppable) -> None:
    """Remember a started daemon so the interpreter's exit stops it if nobody else did."""
    with _live_lock:
        _live[id(obj)] = obj


def unregister_live(obj: Stoppable) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


def stop_quietly(obj: Stoppable) -> None:
    """Stop after a failed start without masking the error that is being raised."""
    try:
        obj.stop()
    except Exception:
        log.exception("cleaning up after a failed start of %r", obj)


@atexit.register
def _stop_everything_at_exit() -> None:
    # Safety net only: fixtures stop their daemons in finalizers; this covers scripts that
    # forgot, and pytest runs that end in an exception before finalizers ran.
    with _live_lock:
        leftovers = list(_live.values())
    for obj in leftovers:
        try:
            obj.stop()
        except Exception:  # at exit, keep going with the others
            log.exception("stopping %r at exit failed", obj)


class DaemonProcess:
    """A daemon child process with its output going to a log file."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        with open(log_path, "ab") as logfile:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                # Own session: a Ctrl-C in the terminal reaches pytest (which then runs the
                # finalizers that stop us in order), not the daemons directly.
                start_new_session=True,
            )
        log.debug("started pid %d: %s", self._popen.pid, " ".join(self.argv))

    @property
    def pid(self) -> int:
        return self._popen.pid

    def returncode(self) -> int | None:
        """None while running, else the exit status (negative: killed by that signal)."""
        return self._popen.poll()

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("pid %d ignored SIGTERM for %.0fs, killing it", self.pid, timeout)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL and reap."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()
        return self._popen.wait()


def log_tail(path: Path | None, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ("" when there is none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def poll_until(
    probe: Callable[[], T | None],
    *,
    process: DaemonProcess,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until it returns non-None; fail if the process dies or time runs out.

    This is readiness polling of a daemon we just exec'd - there is no event to wait for
    (the daemons do not support sd_notify-style readiness on a pipe) - so a short poll with
    a hard deadline is the honest way.  Raises ``TimeoutError`` or ``ChildProcessError``.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while True:
        code = process.returncode()
        if code is not None:
            raise ChildProcessError(f"{what} exited with status {code} before it was ready")
        try:
            result = probe()
        except (OSError, http.client.HTTPException, TimeoutError) as err:
            last_error = f"{type(err).__name__}: {err}"
            result = None
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not answer within {timeout:.0f}s (last: {last_error})")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# small network helpers


def free_tcp_port() -> int:
    """A currently free loopback port (racy by nature: callers retry on EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def http_get(
    url_path: str, *, unix_socket: Path | None = None, host: str = "", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET over a unix socket or to ``host`` (``127.0.0.1:PORT``): (status, headers, body)."""
    conn: http.client.HTTPConnection
    if unix_socket is not None:
        conn = _UnixHTTPConnection(str(unix_socket), timeout)
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        conn.request("GET", url_path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# Private bridges for dockerd live in this range: outside Docker's default pools
# (172.17-31/16, 192.168/16) so they never overlap a system dockerd's networks.
_BRIDGE_POOL = ipaddress.IPv4Network("10.213.0.0/16")


def _used_ipv4_networks(ip: str) -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    addrs = json.loads(
        subprocess.run([ip, "-j", "-4", "addr", "show"], capture_output=True, check=True).stdout
    )
    for iface in addrs:
        for info in iface.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    routes = json.loads(
        subprocess.run([ip, "-j", "-4", "route", "show"], capture_output=True, check=True).stdout
    )
    for route in routes:
        dst = route.get("dst", "default")
        if dst != "default":
            used.append(ipaddress.IPv4Network(dst if "/" in dst else dst + "/32", strict=False))
    return used


def create_bridge() -> tuple[str, ipaddress.IPv4Interface]:
    """Create an up, addressed Linux bridge in a free /24 of 10.213.0.0/16.

    dockerd's embedded BuildKit runs ``RUN`` steps on Docker's network named "bridge";
    with ``--bridge=none`` that network does not exist and every default-network RUN fails.
    A private bridge per dockerd (``--bridge=<ours>``) keeps instances apart and leaves the
    host's docker0 alone.
    """
    ip = require_program("ip", "iproute2", "a private dockerd bridge")
    used = _used_ipv4_networks(ip)
    subnets = list(_BRIDGE_POOL.subnets(new_prefix=24))[1:-1]
    free = [net for net in subnets if not any(net.overlaps(u) for u in used)]
    if not free:
        raise PrerequisiteError(f"no free /24 left in {_BRIDGE_POOL} for a private dockerd bridge")
    subnet = free[secrets.randbelow(len(free))]
    iface = ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
    name = "llbd" + secrets.token_hex(4)
    subprocess.run([ip, "link", "add", "name", name, "type", "bridge"], capture_output=True, check=True)
    try:
        subprocess.run([ip, "addr", "add", str(iface), "dev", name], capture_output=True, check=True)
        subprocess.run([ip, "link", "set", name, "up"], capture_output=True, check=True)
    except subprocess.CalledProcessError:
        delete_links([name])
        raise
    return name, iface


class StopOnExit:
    """``with Daemon.start() as d:`` for the fixtures' daemons: leaving the block stops it."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
