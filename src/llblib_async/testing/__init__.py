"""Real daemons for tests and demos: buildkitd, a registry, dockerd, a busybox rootfs.

Integration tests of llblib-async run against real peers that the project provisions
itself, on a developer machine or a fresh Debian 12 CI machine (root, no Docker Hub):

* :func:`ensure_buildkit_binaries` builds buildkitd/buildctl at the pinned version with Go
  and caches them (``~/.cache/llblib-async/buildkit-<version>/bin``);
* :class:`BuildkitDaemon` runs a private buildkitd (OCI worker, Debian's runc);
* :class:`Registry` runs Debian's ``docker-registry`` on a loopback port;
* :class:`DockerDaemon` runs Debian's dockerd 20.10 with its embedded BuildKit;
* :func:`busybox_rootfs` lays out a minimal root filesystem from ``busybox-static``.

Everything lives in a private instance directory under ``$LLBLIB_TEST_TMPDIR``
(default ``/var/tmp``) and is removed by ``stop()`` - including mounts and containers a
killed daemon leaves behind.  The pytest plugin :mod:`llblib_async.testing.plugin` wraps
them as fixtures.  ``.ci/install-prereqs.sh`` installs the Debian packages they need.
"""

from __future__ import annotations

from .attachable import serve_attachable
from .binaries import (
    BUILDKIT_VERSION,
    BuildkitBinaries,
    default_buildkit_version,
    default_cache_dir,
    ensure_buildkit_binaries,
)
from .buildkitd import BuildkitDaemon
from .dockerd import DockerDaemon
from .registry import Registry, bcrypt_hash
from .rootfs import busybox_rootfs

__all__ = [
    "BUILDKIT_VERSION",
    "BuildkitBinaries",
    "BuildkitDaemon",
    "DockerDaemon",
    "Registry",
    "bcrypt_hash",
    "busybox_rootfs",
    "default_buildkit_version",
    "default_cache_dir",
    "ensure_buildkit_binaries",
    "serve_attachable",
]
