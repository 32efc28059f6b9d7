"""The pytest plugin is opt-in: installing llblib-async changes no other project's pytest.

Each test runs pytest in a subprocess, in a throwaway project of its own (its own
``pytest.ini``, so neither this repository's configuration nor its ``tests/conftest.py``
apply) with the Python environment this suite runs in, where llblib-async is installed.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = "llblib_async.testing.plugin"
FIXTURES = (
    "buildkit_binaries",
    "buildkit_daemon",
    "buildkit_address",
    "buildkit_fresh_daemon",
    "buildkit_registry",
    "buildkit_auth_registry",
    "buildkit_token_registry",
    "buildkit_busybox_rootfs",
    "buildkit_dockerd",
    "buildkit_busybox_image",
)
OPTIONS = ("--buildkit-addr", "--buildkitd-debug")
ADDRESS = "unix:///nowhere/buildkitd.sock"  # buildkit_address returns it as given: nothing starts


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "downstream"
    root.mkdir()
    # (pytest-asyncio, installed here, warns when its loop scope is left unset)
    (root / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (root / "test_plain.py").write_text(
        f"import sys\n\n\ndef test_plain():\n    assert {PLUGIN!r} not in sys.modules\n"
    )
    (root / "test_uses_plugin.py").write_text(
        f"def test_address(buildkit_address):\n    assert buildkit_address == {ADDRESS!r}\n"
    )
    return root


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No PYTEST_ADDOPTS / PYTEST_PLUGINS / PYTEST_DISABLE_PLUGIN_AUTOLOAD from our run:
    # the child loads installed plugins exactly as a downstream project's pytest would.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a guard against a hang, not a speed limit
    )


def listed_fixtures(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()}


def test_the_distribution_registers_no_pytest_plugin() -> None:
    dist = importlib.metadata.distribution("llblib-async")
    assert [ep for ep in dist.entry_points if ep.group == "pytest11"] == []


def test_without_opting_in_there_are_no_fixtures_options_or_plugin(project: Path) -> None:
    fixtures = listed_fixtures(pytest_in(project, "--fixtures"))
    # Installed plugins are auto-loaded in the child (anyio, a dependency, registers its own
    # pytest plugin): so the absence of ours is not just autoloading being off.
    assert "anyio_backend" in fixtures
    assert not {f for f in fixtures if f.startswith("buildkit_")}

    help_text = pytest_in(project, "--help").stdout
    assert "--timeout" in help_text  # pytest-timeout, also auto-loaded
    for option in OPTIONS:
        assert option not in help_text

    plain = pytest_in(project, "test_plain.py")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "1 passed" in plain.stdout

    uses = pytest_in(project, "test_uses_plugin.py")
    assert uses.returncode == 1
    assert "fixture 'buildkit_address' not found" in uses.stdout

    unknown = pytest_in(project, "--buildkit-addr", ADDRESS, "test_plain.py")
    assert unknown.returncode == 4  # usage error
    assert "unrecognized arguments: --buildkit-addr" in unknown.stderr


def test_opting_in_with_p_gives_the_fixtures_and_options(project: Path) -> None:
    fixtures = listed_fixtures(pytest_in(project, "-p", PLUGIN, "--fixtures"))
    assert set(FIXTURES) <= fixtures

    help_text = pytest_in(project, "-p", PLUGIN, "--help").stdout
    for option in OPTIONS:
        assert option in help_text

    uses = pytest_in(project, "-p", PLUGIN, "--buildkit-addr", ADDRESS, "test_uses_plugin.py")
    assert uses.returncode == 0, uses.stdout + uses.stderr
    assert "1 passed" in uses.stdout


def test_opting_in_with_pytest_plugins_in_conftest(project: Path) -> None:
    (project / "conftest.py").write_text(f"pytest_plugins = [{PLUGIN!r}]\n")
    fixtures = listed_fixtures(pytest_in(project, "--fixtures"))
    assert set(FIXTURES) <= fixtures

    # -W error: no deprecation warning (pytest_plugins is allowed in a top-level conftest)
    uses = pytest_in(project, "-W", "error", "--buildkit-addr", ADDRESS, "test_uses_plugin.py")
    assert uses.returncode == 0, uses.stdout + uses.stderr
    assert "1 passed" in uses.stdout
