"""``llblib-async daemon start|stop|status``: the project's own buildkitd, kept running.

``start`` provisions and starts a private buildkitd with the same code as the test
fixtures and ``examples/demo.py`` (:class:`llblib_async.testing.BuildkitDaemon`: it builds
the pinned buildkitd once and caches it, needs root and runc) in a small supervisor
process that outlives the command, and records where it is in a state file
(``$LLBLIB_DAEMON_STATE``, default ``~/.cache/llblib-async/daemon.json``).  Every other
command uses that daemon when neither ``--addr`` nor ``$BUILDKIT_HOST`` names one.
``stop`` ends the supervisor, which stops buildkitd and removes everything it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DaemonState", "read_state", "start", "state_path", "status", "stop"]

STATE_ENV = "LLBLIB_DAEMON_STATE"


def state_path() -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llblib-async" / "daemon.json"


@dataclass(frozen=True, slots=True)
class DaemonState:
    address: str
    supervisor_pid: int
    daemon_pid: int
    version: str
    log_path: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_state() -> DaemonState | None:
    """The running daemon's state, or ``None`` (no state file, or its supervisor is gone)."""
    try:
        data = json.loads(state_path().read_text())
        state = DaemonState(**data)
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.supervisor_pid) else None


def start(timeout: float = 900.0) -> DaemonState:
    """Start the supervisor and wait until it wrote the state file (raises ``RuntimeError``)."""
    current = read_state()
    if current is not None:
        return current
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log = path.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llblib_async.cli.daemon", "--supervise", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None:
            return state
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the daemon supervisor exited with {proc.returncode}:\n{tail}")
        time.sleep(0.1)  # polling a child process's progress, not synchronising a test
    proc.terminate()
    raise RuntimeError(f"buildkitd did not start within {timeout:.0f}s; see {log}")


def stop(timeout: float = 60.0) -> bool:
    """Stop the daemon; returns whether one was running."""
    state = read_state()
    if state is None:
        state_path().unlink(missing_ok=True)
        return False
    os.kill(state.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(state.supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGKILL)
    state_path().unlink(missing_ok=True)
    return True


def status() -> DaemonState | None:
    return read_state()


def _supervise(path: Path) -> int:
    """The supervisor: start buildkitd, write the state file, wait for SIGTERM, stop it."""
    from ..testing import BuildkitDaemon

    with BuildkitDaemon.start() as daemon:
        state = DaemonState(
            address=daemon.address,
            supervisor_pid=os.getpid(),
            daemon_pid=daemon.pid,
            version=daemon.version,
            log_path=str(daemon.log_path),
        )
        wanted = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)  # before anyone can know our pid
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_asdict(state)))
        tmp.replace(path)
        signal.sigwait(wanted)
    path.unlink(missing_ok=True)
    return 0


def _asdict(state: DaemonState) -> dict[str, object]:
    return {f: getattr(state, f) for f in state.__slots__}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--supervise":
        sys.exit(_supervise(Path(sys.argv[2])))
    sys.exit("usage: python -m llblib_async.cli.daemon --supervise STATE_FILE")
