"""Test images in the loopback registry: a busybox image built from the busybox rootfs.

Tests that pull images (``llb.image``, ``llb.image_blob``, pinned digests) need an
image in a registry, and there is no Docker Hub.  :func:`push_busybox_image`
builds ``FROM scratch`` + ``COPY . /`` of the busybox root filesystem with the
project's own Go ``buildctl`` (the Dockerfile frontend, not llblib-async: a bug
in the code under test cannot hide in its own fixture) and pushes it to a
:class:`~llblib_async.testing.Registry`.

Pushing to a plain-HTTP ``127.0.0.1:PORT`` registry only needs the exporter's
``registry.insecure=true``; pulling from it needs nothing, because BuildKit's
resolver talks plain HTTP to loopback registries by default.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import _proc
from .prerequisite import PrerequisiteError

__all__ = [
    "BUSYBOX_DOCKERFILE",
    "DOCKERFILE_FRONTEND_DOCKERFILE",
    "PushedImage",
    "buildctl_push",
    "push_busybox_image",
    "push_dockerfile_frontend_image",
]

log = logging.getLogger("llblib_async.testing")

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY . /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
"""
"""The Dockerfile of the busybox test image; the build context is the busybox rootfs."""


@dataclass(frozen=True, slots=True)
class PushedImage:
    """An image in a test registry.

    ``repository`` is ``127.0.0.1:PORT/name``; ``digest`` the manifest digest the
    registry serves for ``tag``, ``config_digest`` the digest of its config blob.
    """

    repository: str
    tag: str
    digest: str
    config_digest: str

    @property
    def ref(self) -> str:
        """``repository:tag``."""
        return f"{self.repository}:{self.tag}"

    @property
    def pinned_ref(self) -> str:
        """``repository@digest``: the same image, addressed by content."""
        return f"{self.repository}@{self.digest}"


def push_busybox_image(
    *,
    buildctl: Path,
    address: str,
    rootfs: Path,
    registry_host: str,
    workdir: Path,
    name: str = "busybox",
    tag: str = "latest",
    timeout: float = 300.0,
) -> PushedImage:
    """Build the busybox image from ``rootfs`` with ``buildctl`` at ``address`` and push it.

    ``registry_host`` is ``127.0.0.1:PORT``; ``workdir`` (created) receives the
    Dockerfile, buildctl's metadata file and log.  Raises
    :class:`~llblib_async.testing.PrerequisiteError` with the log's tail if the build
    or the push fails.
    """
    return buildctl_push(
        buildctl=buildctl,
        address=address,
        context=rootfs,
        dockerfile=BUSYBOX_DOCKERFILE,
        repository=f"{registry_host}/{name}",
        tag=tag,
        workdir=workdir,
        timeout=timeout,
    )


DOCKERFILE_FRONTEND_DOCKERFILE = """\
FROM scratch
LABEL moby.buildkit.frontend.network.none="true"
LABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,\\
moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts"
COPY dockerfile-frontend /bin/dockerfile-frontend
ENTRYPOINT ["/bin/dockerfile-frontend"]
"""
"""The Dockerfile of the frontend image (the release stage of BuildKit's own)."""


def push_dockerfile_frontend_image(
    *,
    buildctl: Path,
    address: str,
    binary: Path,
    registry_host: str,
    workdir: Path,
    name: str = "dockerfile-frontend",
    tag: str = "latest",
    timeout: float = 300.0,
) -> PushedImage:
    """Put BuildKit's Dockerfile frontend ``binary`` in an image and push it with ``buildctl``.

    The image is what ``docker/dockerfile`` images are (``FROM scratch``, the static
    binary as entrypoint, the frontend labels), so ``gateway.v0`` with ``source=<ref>``
    runs it. Raises :class:`~llblib_async.testing.PrerequisiteError` when the push fails.
    """
    context = workdir / "context"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, context / "dockerfile-frontend")
    return buildctl_push(
        buildctl=buildctl,
        address=address,
        context=context,
        dockerfile=DOCKERFILE_FRONTEND_DOCKERFILE,
        repository=f"{registry_host}/{name}",
        tag=tag,
        workdir=workdir,
        timeout=timeout,
    )


def buildctl_push(
    *,
    buildctl: Path,
    address: str,
    context: Path,
    dockerfile: str,
    repository: str,
    tag: str,
    workdir: Path,
    timeout: float = 300.0,
) -> PushedImage:
    """Build ``dockerfile`` on ``context`` with Go ``buildctl`` and push ``repository:tag``."""
    workdir.mkdir(parents=True, exist_ok=True)
    dockerfile_dir = workdir / "dockerfile"
    dockerfile_dir.mkdir(exist_ok=True)
    (dockerfile_dir / "Dockerfile").write_text(dockerfile)
    metadata_file = workdir / "metadata.json"
    log_path = workdir / "buildctl.log"
    argv = [
        str(buildctl), "--addr", address, "build",
        "--frontend", "dockerfile.v0",
        "--local", f"context={context}",
        "--local", f"dockerfile={dockerfile_dir}",
        "--output", f"type=image,name={repository}:{tag},push=true,registry.insecure=true",
        "--metadata-file", str(metadata_file),
        "--progress", "plain",
    ]  # fmt: skip
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        try:
            proc = subprocess.run(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_proc.child_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PrerequisiteError(
                f"buildctl did not push {repository}:{tag} within {timeout:.0f}s; log:\n"
                + _proc.log_tail(log_path)
            ) from None
    if proc.returncode != 0:
        raise PrerequisiteError(
            f"buildctl failed to push {repository}:{tag} (exit {proc.returncode}); log:\n"
            + _proc.log_tail(log_path)
        )
    metadata = json.loads(metadata_file.read_text())
    image = PushedImage(
        repository=repository,
        tag=tag,
        digest=metadata["containerimage.digest"],
        config_digest=metadata["containerimage.config.digest"],
    )
    log.info("pushed %s (%s) in %.2fs", image.ref, image.digest, time.monotonic() - started)
    return image
