"""Real daemons for tests and demos: buildkitd, a registry, dockerd, a busybox rootfs.

Integration tests of llblib-async run against real peers that the project provisions
itself, on a developer machine or a fresh Debian 12 CI machine (root, no Docker Hub):

* :func:`ensure_buildkit_binaries` builds buildkitd/buildctl at the pinned version with Go
  and caches them (``~/.cache/llblib-async/buildkit-<version>/bin``);
* :func:`ensure_runc` finds ``/usr/sbin/runc`` or builds runc the same way (cached);
* :class:`BuildkitDaemon` runs a private buildkitd (OCI worker, that runc);
* :class:`Registry` runs Debian's ``docker-registry`` on a loopback port;
* :class:`DockerDaemon` runs Debian's dockerd 20.10 with its embedded BuildKit;
* :func:`busybox_rootfs` lays out a minimal root filesystem from ``busybox-static``.

Everything lives in a private instance directory under ``$LLBLIB_TEST_TMPDIR``
(default ``/var/tmp``) and is removed by ``stop()`` - including mounts and containers a
killed daemon leaves behind.  A missing prerequisite raises :class:`PrerequisiteError`
with the command that installs it; :mod:`~llblib_async.testing.provision` (``python -m
llblib_async.testing.provision tests``, which ``nox -s tests`` runs) installs the Debian
packages when run as root on Debian, and ``.ci/install-prereqs.sh`` installs them for CI.

The pytest plugin :mod:`llblib_async.testing.plugin` wraps them as fixtures; it is opt-in
(``pytest_plugins = ["llblib_async.testing.plugin"]`` in a top-level ``conftest.py``, or
``pytest -p llblib_async.testing.plugin``): installing llblib-async changes no pytest run.
The names below are imported on first use, so loading the plugin imports none of the
daemon modules until a fixture needs one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .prerequisite import PrerequisiteError

if TYPE_CHECKING:
    from .attachable_server import serve_attachable
    from .binaries import (
        BUILDKIT_VERSION,
        RUNC_VERSION,
        BuildkitBinaries,
        default_buildkit_version,
        default_cache_dir,
        ensure_buildkit_binaries,
        ensure_runc,
    )
    from .buildkitd import BuildkitDaemon
    from .docker_registry import Registry, bcrypt_hash
    from .dockerd import DockerDaemon
    from .rootfs import busybox_rootfs

__all__ = [
    "BUILDKIT_VERSION",
    "RUNC_VERSION",
    "BuildkitBinaries",
    "BuildkitDaemon",
    "DockerDaemon",
    "PrerequisiteError",
    "Registry",
    "bcrypt_hash",
    "busybox_rootfs",
    "default_buildkit_version",
    "default_cache_dir",
    "ensure_buildkit_binaries",
    "ensure_runc",
    "serve_attachable",
]

# Public name -> the submodule defining it, imported on first access (PEP 562).
_LAZY = {
    "BUILDKIT_VERSION": "binaries",
    "BuildkitBinaries": "binaries",
    "BuildkitDaemon": "buildkitd",
    "DockerDaemon": "dockerd",
    "Registry": "docker_registry",
    "bcrypt_hash": "docker_registry",
    "busybox_rootfs": "rootfs",
    "default_buildkit_version": "binaries",
    "default_cache_dir": "binaries",
    "ensure_buildkit_binaries": "binaries",
    "ensure_runc": "binaries",
    "RUNC_VERSION": "binaries",
    "serve_attachable": "attachable_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
