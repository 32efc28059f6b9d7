"""Provision what the demo and the test suite need on a fresh machine, saying what it does.

``nox -s demo`` and ``nox -s tests`` call this before they start (``python -m
llblib_async.testing.provision demo|tests``); the fixtures and the demo would find the
same things themselves, this does it up front and tells the user:

* **demo**: root, Go, buildkitd/buildctl (built from the Go module proxy and cached,
  :func:`~llblib_async.testing.ensure_buildkit_binaries`) and runc (``/usr/sbin/runc``, or
  built and cached, :func:`~llblib_async.testing.ensure_runc`).  Nothing from apt.
* **tests**: the same, plus the Debian packages of :data:`DEBIAN_PACKAGES` (the registry,
  dockerd, busybox, openssl, ssh-agent...).  Run as root on Debian it installs the missing
  ones with ``apt-get`` (printing the command first); anywhere else it prints them with the
  command and leaves it to the user (the fixtures that need them then fail saying so).

``.ci/install-prereqs.sh`` installs the same list for CI (a unit test keeps the two equal).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import binaries
from .prerequisite import PrerequisiteError

__all__ = [
    "DEBIAN_PACKAGES",
    "DebianPackage",
    "install_debian_packages",
    "missing_debian_packages",
    "provision",
]


@dataclass(frozen=True)
class DebianPackage:
    """A Debian package the test fixtures use: its name, a file it installs, and why."""

    name: str
    probe: str
    why: str


#: What the test suite needs from Debian 12 (``.ci/install-prereqs.sh`` lists the same).
DEBIAN_PACKAGES: Final[tuple[DebianPackage, ...]] = (
    DebianPackage(
        "runc", "/usr/sbin/runc", "the test dockerd runs containers with it (buildkitd can use a built one)"
    ),
    DebianPackage("docker-registry", "/usr/bin/docker-registry", "the loopback registry fixture"),
    DebianPackage("busybox-static", "/bin/busybox", "the busybox rootfs fixture (a static /bin/busybox)"),
    DebianPackage("docker.io", "/usr/sbin/dockerd", "the dockerd fixture and the docker CLI its tests drive"),
    DebianPackage("containerd", "/usr/bin/containerd", "started privately for each test dockerd"),
    DebianPackage("tini", "/usr/bin/tini", "docker-init, used by dockerd"),
    DebianPackage("iptables", "/usr/sbin/iptables", "a docker.io dependency"),
    DebianPackage("iproute2", "/usr/sbin/ip", "each test dockerd gets a private bridge"),
    DebianPackage("mount", "/usr/bin/mount", "mount/umount"),
    DebianPackage("tar", "/usr/bin/tar", "the dockerd tests import the busybox rootfs as an image"),
    DebianPackage(
        "openssh-client", "/usr/bin/ssh-agent", "ssh-agent/ssh-add/ssh-keygen for the SSH forwarding tests"
    ),
    DebianPackage("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "Go fetches modules over HTTPS"),
    DebianPackage(
        "openssl", "/usr/bin/openssl", "the token-auth registry fixture makes its key and certificate"
    ),
)

APT_GET: Final = "/usr/bin/apt-get"
_POLICY_RC = Path("/usr/sbin/policy-rc.d")

Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"llblib-async: {message}", file=sys.stderr, flush=True)


def missing_debian_packages(
    packages: Sequence[DebianPackage] = DEBIAN_PACKAGES, *, root: Path = Path("/")
) -> list[DebianPackage]:
    """The packages whose probe file is absent below ``root`` (``/``; tests point it elsewhere)."""
    return [p for p in packages if not os.path.exists(root / p.probe.lstrip("/"))]


def _apt_command(names: Sequence[str], *, simulate: bool) -> list[str]:
    return [
        APT_GET,
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=600",  # wait for another apt run instead of failing
        *(["--simulate"] if simulate else []),
        *names,
    ]


def can_install() -> str | None:
    """None when apt can install here (root on Debian with apt-get), else why not."""
    if os.geteuid() != 0:
        return "not running as root"
    if not Path("/etc/debian_version").exists():
        return "not a Debian system"
    if not os.access(APT_GET, os.X_OK):
        return f"no {APT_GET}"
    return None


def install_debian_packages(
    packages: Sequence[DebianPackage], *, dry_run: bool = False, say: Say = _say
) -> None:
    """Install ``packages`` with apt-get, printing the command first; root on Debian only.

    ``dry_run`` runs ``apt-get install --simulate`` instead (it changes nothing and needs
    the apt lists to be present).  Otherwise ``apt-get update`` runs first, and services
    of the packages (docker, containerd, docker-registry) are kept from starting with the
    standard ``policy-rc.d`` mechanism for the duration of the install, as
    ``.ci/install-prereqs.sh`` does: the fixtures run private daemons and never use them.
    Raises :class:`PrerequisiteError` when apt cannot be used here or fails.
    """
    if not packages:
        return
    names = [p.name for p in packages]
    why = can_install()
    if why is not None and not dry_run:
        raise PrerequisiteError(
            f"missing Debian packages {', '.join(names)} and cannot install them ({why}): "
            f"run as root `apt-get install -y --no-install-recommends {' '.join(names)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = _apt_command(names, simulate=dry_run)
    for package in packages:
        say(f"  {package.name}: {package.why}")
    say(("would run: " if dry_run else "installing with: ") + " ".join(command))
    policy_made = False
    try:
        if not dry_run:
            if not _POLICY_RC.exists():
                _POLICY_RC.write_text(
                    "#!/bin/sh\n# written by llblib_async.testing.provision for one apt run\nexit 101\n"
                )
                _POLICY_RC.chmod(0o755)
                policy_made = True
            say(f"{APT_GET} update -qq")
            subprocess.run([APT_GET, "update", "-qq"], env=env, check=False, stdin=subprocess.DEVNULL)
        proc = subprocess.run(command, env=env, check=False, stdin=subprocess.DEVNULL, capture_output=dry_run)
    finally:
        if policy_made:
            _POLICY_RC.unlink(missing_ok=True)
    if proc.returncode != 0:
        detail = f": {proc.stderr.decode(errors='replace').strip()}" if dry_run else ""
        raise PrerequisiteError(f"`{' '.join(command)}` failed with status {proc.returncode}{detail}")


def provision(
    what: str,
    *,
    dry_run: bool = False,
    probe_root: Path = Path("/"),
    say: Say = _say,
) -> None:
    """Make sure what ``what`` (``"demo"`` or ``"tests"``) needs is there; see the module doc.

    The demo provisions nothing when ``$BUILDKIT_HOST`` names a daemon or the default
    buildkitd socket exists.  ``dry_run`` and ``probe_root`` (where the Debian packages'
    files are looked for) exist so the missing-package path can be exercised without
    changing the machine.
    """
    if what not in ("demo", "tests"):
        raise ValueError(f"nothing to provision for {what!r}: expected 'demo' or 'tests'")
    if what == "demo" and (os.environ.get("BUILDKIT_HOST") or Path("/run/buildkit/buildkitd.sock").exists()):
        say("the demo uses the configured BuildKit; nothing to provision")
        return
    if what == "tests":
        missing = missing_debian_packages(root=probe_root)
        if missing:
            why = can_install()
            names = " ".join(p.name for p in missing)
            if why is None or dry_run:
                say(f"the test suite needs Debian packages that are missing: {names}")
                install_debian_packages(missing, dry_run=dry_run, say=say)
            else:
                say(
                    f"the test suite needs Debian packages that are missing ({names}) and cannot install "
                    f"them ({why}); as root: apt-get install -y --no-install-recommends {names}"
                )
    if os.geteuid() != 0:
        say("not root: buildkitd, the registry and dockerd need root, the fixtures will say so")
    if not dry_run:
        bk = binaries.ensure_buildkit_binaries()
        runc = binaries.ensure_runc()
        say(f"buildkitd {bk.version} at {bk.buildkitd}; runc at {runc}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llblib_async.testing.provision", description=__doc__.splitlines()[0]
    )
    parser.add_argument("what", choices=["demo", "tests"])
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed, change nothing")
    parser.add_argument("--probe-root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        provision(args.what, dry_run=args.dry_run, probe_root=args.probe_root)
    except PrerequisiteError as err:
        print(f"llblib-async: cannot provision the {args.what}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
