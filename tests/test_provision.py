"""Provisioning a fresh machine: runc built when /usr/sbin/runc is missing, Debian packages.

The "missing" paths are exercised without touching the machine: the system runc is looked
for at a path that does not exist (``$LLBLIB_RUNC`` / ``system=``), the runc cache is an
empty directory, and the Debian packages' files are looked for below an empty root with
apt in ``--simulate`` mode.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.testing import (
    RUNC_VERSION,
    BuildkitBinaries,
    BuildkitDaemon,
    PrerequisiteError,
    _proc,
    binaries,
    ensure_runc,
)
from llblib_async.testing import provision as provision_module
from llblib_async.testing.provision import provision

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_seccomp_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pkg-config finds no libseccomp (as on a machine without libseccomp-dev)."""
    empty = tmp_path / "no-pkgconfig"
    empty.mkdir()
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(empty))
    monkeypatch.delenv("PKG_CONFIG_PATH", raising=False)


# ---------------------------------------------------------------------------------------
# runc


@pytest.mark.usefixtures("no_seccomp_headers")
def test_runc_is_built_with_seccomp_when_the_system_one_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache" / "runc-cache"
    runc = ensure_runc(system=tmp_path / "usr-sbin-runc", cache_dir=cache)
    assert runc == cache / "runc"
    said = capfd.readouterr().err
    assert f"no runc at {tmp_path / 'usr-sbin-runc'}: building runc {RUNC_VERSION}" in said
    version = subprocess.run([runc, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"runc version {RUNC_VERSION.removeprefix('v')}" in version
    assert re.search(r"^libseccomp: \d+\.\d+\.\d+$", version, re.M), version  # seccomp compiled in
    assert sorted(p.name for p in cache.parent.iterdir()) == [".runc-cache.lock", "runc-cache"]

    # cached: found again without Go
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "GO_FALLBACKS", ())
    assert ensure_runc(system=tmp_path / "usr-sbin-runc", cache_dir=cache) == runc
    assert "building" not in capfd.readouterr().err


def test_an_existing_system_runc_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ensure_runc(system="/usr/sbin/runc", cache_dir=tmp_path / "unused") == Path("/usr/sbin/runc")
    monkeypatch.setenv("LLBLIB_RUNC", "/usr/sbin/runc")
    assert ensure_runc(cache_dir=tmp_path / "unused") == Path("/usr/sbin/runc")
    assert not (tmp_path / "unused").exists()


@pytest.mark.usefixtures("no_seccomp_headers")
def test_no_libseccomp_fails_naming_the_package_and_leaves_no_cache(tmp_path: Path) -> None:
    nolib = tmp_path / "lib"
    nolib.mkdir()
    cache = tmp_path / "cache" / "runc"
    with pytest.raises(PrerequisiteError, match=r"libseccomp.*apt-get install -y libseccomp2"):
        ensure_runc(system=tmp_path / "missing", cache_dir=cache, libseccomp_dirs=(str(nolib),))
    assert not cache.exists()
    assert [p.name for p in cache.parent.iterdir()] == [".runc.lock"], "no staging directory left behind"


def test_bogus_runc_version_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a runc release version: 'latest'"):
        ensure_runc(system=tmp_path / "missing", version="latest", cache_dir=tmp_path)


def test_libseccomp_is_found_with_its_version(tmp_path: Path) -> None:
    (tmp_path / "libseccomp.so.2.5.4").write_bytes(b"")
    (tmp_path / "libseccomp.so.2").symlink_to("libseccomp.so.2.5.4")
    assert binaries.find_libseccomp((str(tmp_path / "none"), str(tmp_path))) == (
        tmp_path / "libseccomp.so.2.5.4",
        (2, 5, 4),
    )
    assert binaries.find_libseccomp((str(tmp_path / "none"),)) is None


@pytest.mark.usefixtures("no_seccomp_headers")
def test_buildkitd_runs_build_steps_under_seccomp_with_a_built_runc(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    buildkit_binaries: BuildkitBinaries,
    buildkit_busybox_rootfs: Path,
) -> None:
    monkeypatch.setenv("LLBLIB_RUNC", str(tmp_path / "no-runc-here"))
    monkeypatch.setenv("LLBLIB_CACHE_DIR", str(tmp_path / "cache"))
    built = tmp_path / "cache" / f"runc-{RUNC_VERSION}" / "runc"
    with BuildkitDaemon.start(binaries=buildkit_binaries) as daemon:
        assert (daemon.workdir / _proc.INSTANCE_RUNC).resolve() == built
        state = (
            llb.local(buildkit_busybox_rootfs, name="rootfs")
            .run(
                "sh -c 'grep ^Seccomp: /proc/self/status > /out/status'",
                mounts=[llb.bind("/out", llb.scratch())],
            )
            .get_mount("/out")
        )

        async def solve() -> None:
            async with llblib_async.connect(daemon.address) as client:
                await client.solve(state, exports=[llblib_async.LocalExport(tmp_path / "out")])

        asyncio.run(solve())
    assert (tmp_path / "out" / "status").read_text().split() == ["Seccomp:", "2"]  # 2: filter mode


# ---------------------------------------------------------------------------------------
# Debian packages


def test_install_prereqs_script_lists_the_same_packages() -> None:
    script = (REPO / ".ci" / "install-prereqs.sh").read_text()
    block = re.search(r"^PACKAGES=\(\n(.*?)^\)", script, re.S | re.M)
    assert block is not None
    listed = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [name for name in listed if name] == [p.name for p in provision_module.DEBIAN_PACKAGES]


def test_the_suites_packages_are_present_after_provisioning() -> None:
    assert provision_module.missing_debian_packages() == []


def test_missing_packages_are_found_below_another_root(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "openssl").write_bytes(b"")
    missing = provision_module.missing_debian_packages(root=tmp_path)
    assert [p.name for p in missing] == [
        p.name for p in provision_module.DEBIAN_PACKAGES if p.name != "openssl"
    ]


def test_provision_tests_dry_run_says_what_apt_would_install(tmp_path: Path) -> None:
    said: list[str] = []
    provision("tests", dry_run=True, probe_root=tmp_path, say=said.append)
    assert said[0].startswith("the test suite needs Debian packages that are missing: runc docker-registry")
    assert "  docker-registry: the loopback registry fixture" in said
    command = said[-1]
    assert command.startswith("would run: /usr/bin/apt-get install -y -qq --no-install-recommends")
    assert command.endswith("--simulate " + " ".join(p.name for p in provision_module.DEBIAN_PACKAGES))


def test_provision_cli_dry_run_runs_apt_simulate(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llblib_async.testing.provision",
            "tests",
            "--dry-run",
            "--probe-root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "llblib-async: would run: /usr/bin/apt-get install" in proc.stderr


def test_installing_as_a_user_fails_with_the_command_to_run(tmp_path: Path) -> None:
    code = (
        "from llblib_async.testing import provision as p\np.install_debian_packages([p.DEBIAN_PACKAGES[1]])\n"
    )
    # a user namespace without mappings: geteuid() is 65534, files stay readable
    proc = subprocess.run(
        ["unshare", "--user", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "PrerequisiteError: missing Debian packages docker-registry and cannot install them" in proc.stderr
    assert (
        "(not running as root): run as root `apt-get install -y --no-install-recommends docker-registry`"
        in (proc.stderr)
    )


def test_provision_rejects_an_unknown_target() -> None:
    with pytest.raises(ValueError, match="nothing to provision for 'docs'"):
        provision("docs")
