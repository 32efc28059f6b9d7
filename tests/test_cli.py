"""The ``llblib-async`` command, run as a subprocess against the real test daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import llblib_async
from llblib_async.cli import Exit
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.daemon


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("BUILDKIT_HOST", "BUILDKIT_PROGRESS", "NO_COLOR")
    }
    return subprocess.run(
        [sys.executable, "-m", "llblib_async", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "two.py").write_text(
        "import os\n"
        "from llblib_async import llb\n"
        "def build_requests(solver):\n"
        "    base = llb.image(os.environ['BASE_IMAGE'])\n"
        "    app = base.run(\"sh -c 'echo hello from app'\", ignore_cache=True).root\n"
        "    yield solver.build(app, label='app')\n"
        "    yield base.run(\"sh -c 'echo hello from tool >&2'\", ignore_cache=True).root\n"
    )
    (tmp_path / "fails.py").write_text(
        "import os\n"
        "from llblib_async import llb\n"
        "async def build_requests(solver):\n"
        "    base = llb.image(os.environ['BASE_IMAGE'])\n"
        "    return base.run(\"sh -c 'echo about to fail; exit 7'\", ignore_cache=True, name='breaks').root\n"
    )
    (tmp_path / "files.py").write_text(
        "from llblib_async import llb\n"
        "def build_requests(solver):\n"
        "    return llb.scratch().mkfile('/motd', 'hi\\n')\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the CLI does not run the main block')\n"
    )
    (tmp_path / "dockerfile.py").write_text(
        "import os\n"
        "from llblib_async import llb\n"
        "def build_requests(solver):\n"
        "    return llb.dockerfile(f\"FROM {os.environ['BASE_IMAGE']}\\nRUN echo from-dockerfile\\n\")\n"
    )
    (tmp_path / "nothing.py").write_text("X = 1\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('broken script')\n")
    (tmp_path / "wrong.py").write_text("def build_requests(solver):\n    return 42\n")
    return tmp_path


def test_help_everywhere() -> None:
    top = run("--help")
    assert top.returncode == 0
    assert "exit codes" in top.stdout
    for command in ("info", "workers", "du", "prune", "daemon", "build", "dump"):
        sub = run(command, "--help")
        assert sub.returncode == 0, command
        assert "--addr" in sub.stdout, command
        assert "--progress" in sub.stdout, command


def test_console_script_is_declared() -> None:
    import importlib.metadata

    eps = importlib.metadata.distribution("llblib-async").entry_points
    (ep,) = [ep for ep in eps if ep.group == "console_scripts"]
    assert (ep.name, ep.value) == ("llblib-async", "llblib_async.cli:main")


def test_info_workers_du_prune(buildkit_address: str) -> None:
    info = run("info", "--addr", buildkit_address)
    assert info.returncode == 0, info.stderr
    assert "version:  v0." in info.stdout
    workers = run("--addr", buildkit_address, "workers")  # --addr before the command works too
    assert workers.returncode == 0, workers.stderr
    assert "linux/" in workers.stdout
    du = run("du", "--addr", buildkit_address)
    assert du.returncode == 0, du.stderr
    assert du.stdout.splitlines()[-1].startswith("Total: ")
    du_json = run("du", "--json", "--addr", buildkit_address)
    assert du_json.returncode == 0
    for line in du_json.stdout.splitlines():
        assert set(json.loads(line)) == {"id", "size", "in_use", "description"}
    prune = run("prune", "--addr", buildkit_address, "--filter", "id==does-not-exist")
    assert prune.returncode == 0, prune.stderr
    assert prune.stdout.strip() == "Total: 0B"


def test_build_plain_runs_every_request(
    buildkit_address: str, buildkit_busybox_image: PushedImage, scripts: Path
) -> None:
    res = run(
        "build", str(scripts / "two.py"), "--addr", buildkit_address, "--progress", "plain",
        env={"BASE_IMAGE": buildkit_busybox_image.ref},
    )  # fmt: skip
    assert res.returncode == Exit.OK, res.stderr
    assert "[app] #" in res.stderr
    assert "[2] #" in res.stderr  # the unlabelled second request is numbered
    assert "hello from app" in res.stderr
    assert "hello from tool" in res.stderr


def test_build_failure_exits_1_with_the_failed_step(
    buildkit_address: str, buildkit_busybox_image: PushedImage, scripts: Path
) -> None:
    res = run(
        "build", str(scripts / "fails.py"), "--addr", buildkit_address,
        env={"BASE_IMAGE": buildkit_busybox_image.ref, "BUILDKIT_PROGRESS": "plain"},
    )  # fmt: skip
    assert res.returncode == Exit.BUILD_FAILED
    assert "#2 breaks" in res.stderr or "breaks" in res.stderr
    assert "about to fail" in res.stderr
    assert "ERROR: process" in res.stderr
    assert any(ln.startswith("error: ") and "exit code: 7" in ln for ln in res.stderr.splitlines())


def test_build_rawjson_from_the_environment(buildkit_address: str, scripts: Path) -> None:
    res = run(
        "build", str(scripts / "files.py"), "--addr", buildkit_address, env={"BUILDKIT_PROGRESS": "rawjson"}
    )
    assert res.returncode == Exit.OK, res.stderr
    objs: list[dict[str, Any]] = [json.loads(line) for line in res.stderr.splitlines()]
    names = {v.get("name") for o in objs for v in o.get("vertexes", [])}
    assert "mkfile /motd" in names


def test_dump_prints_the_graph_yaml(scripts: Path) -> None:
    res = run("dump", str(scripts / "files.py"))
    assert res.returncode == Exit.OK, res.stderr
    (node,) = yaml.safe_load(res.stdout)
    assert node["type"] == "FILE"
    assert node["actions"][0]["path"] == "/motd"


def test_dump_resolves_a_dockerfile_through_a_session_when_asked(
    buildkit_address: str, buildkit_busybox_image: PushedImage, scripts: Path
) -> None:
    env = {"BASE_IMAGE": buildkit_busybox_image.ref}
    offline = run("dump", str(scripts / "dockerfile.py"), env=env)
    assert offline.returncode == Exit.BUILD_FAILED
    assert "dump --session" in offline.stderr
    res = run("dump", "--session", str(scripts / "dockerfile.py"), "--addr", buildkit_address, env=env)
    assert res.returncode == Exit.OK, res.stderr
    (node,) = yaml.safe_load(res.stdout)
    assert node["type"] == "EXEC"
    assert node["args"] == ["/bin/sh", "-c", "echo from-dockerfile"]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("nothing.py", "defines no function build_requests(solver)"),
        ("raises.py", "raised RuntimeError: broken script"),
        ("wrong.py", "returned int"),
        ("missing.py", "no such build script"),
    ],
)
def test_bad_scripts_exit_4(buildkit_address: str, scripts: Path, script: str, message: str) -> None:
    res = run("build", str(scripts / script), "--addr", buildkit_address, "--progress", "quiet")
    assert res.returncode == Exit.SCRIPT
    assert message in res.stderr
    assert str(scripts / script) in res.stderr


def test_usage_errors_exit_2(scripts: Path) -> None:
    assert run("build", str(scripts / "files.py"), "--progress", "fancy").returncode == Exit.USAGE
    assert run("frobnicate").returncode == Exit.USAGE
    tty = run("build", str(scripts / "files.py"), "--progress", "tty")  # stderr is a pipe here
    assert tty.returncode == Exit.USAGE
    assert "not a terminal" in tty.stderr


def test_unreachable_daemon_exits_3(tmp_path: Path) -> None:
    res = run("info", "--addr", f"unix://{tmp_path}/nothing.sock")
    assert res.returncode == Exit.UNREACHABLE
    assert "cannot reach BuildKit" in res.stderr


def test_debug_on_error_without_debug_shells(buildkit_address: str, scripts: Path) -> None:
    res = run("build", "--debug-on-error", str(scripts / "files.py"), "--addr", buildkit_address)
    if hasattr(llblib_async, "OnError"):
        assert res.returncode == Exit.OK, res.stderr  # nothing failed: no shell
    else:
        assert res.returncode == Exit.UNAVAILABLE
        assert "--debug-on-error is not available" in res.stderr


def test_debug_on_error_opens_a_shell_in_the_failed_step(
    buildkit_address: str, buildkit_busybox_image: PushedImage, scripts: Path
) -> None:
    # stdin is not a terminal here: the shell reads the commands piped to it
    res = run(
        "build", "--debug-on-error", str(scripts / "fails.py"), "--addr", buildkit_address,
        "--progress", "plain",
        env={"BASE_IMAGE": buildkit_busybox_image.ref},
        input="echo in-the-failed-step-$((6*7))\nexit\n",
    )  # fmt: skip
    assert "in-the-failed-step-42" in res.stdout + res.stderr
    assert res.returncode == Exit.BUILD_FAILED  # the build still failed
    assert "exit code: 7" in res.stderr


def test_daemon_start_status_stop(tmp_path: Path) -> None:
    env = {"LLBLIB_DAEMON_STATE": str(tmp_path / "daemon.json")}
    assert run("daemon", "status", env=env).returncode == Exit.UNREACHABLE
    started = run("daemon", "start", env=env, timeout=900)
    try:
        assert started.returncode == Exit.OK, started.stderr
        address = started.stdout.strip()
        assert address.startswith("unix://")
        status = run("daemon", "status", env=env)
        assert status.returncode == Exit.OK
        assert address in status.stdout
        again = run("daemon", "start", env=env)  # idempotent: the same daemon
        assert again.stdout.strip() == address
        info = run("info", env=env)  # no --addr, no $BUILDKIT_HOST: the started daemon
        assert info.returncode == Exit.OK, info.stderr
        assert address in info.stdout
    finally:
        stopped = run("daemon", "stop", env=env)
    assert stopped.stdout.strip() == "stopped"
    assert run("daemon", "status", env=env).stdout.strip() == "not running"
    assert not Path(address.removeprefix("unix://")).exists()
    assert run("daemon", "stop", env=env).stdout.strip() == "not running"
