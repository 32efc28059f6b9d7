"""buildkitd and buildctl, built from source at the pinned version and cached.

There are no distro packages of a current BuildKit and no Docker Hub on the CI machines,
but the Go module proxy is reachable, so the binaries are built from the module source.
``go install github.com/moby/buildkit/cmd/buildkitd@vX`` does not work: buildkit's go.mod
has ``exclude`` directives, which ``go install pkg@version`` refuses.  Instead the module
is downloaded (``go mod download -json``) and built inside its source directory.

The build takes minutes on a cold Go cache, so the result is cached per version and
reused while both binaries are present and executable.  It is built into a temporary
sibling directory and renamed into place, so an interrupted build never leaves a cache
that looks complete; a file lock serialises concurrent builders (parallel test workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._proc import log_tail
from .prerequisite import PrerequisiteError

log = logging.getLogger("llblib_async.testing")

#: The BuildKit release the tests run against.  Keep equal to ``[go] buildkit`` in
#: proto/pins.toml (a unit test checks it); the installed package cannot read that file.
BUILDKIT_VERSION: Final = "v0.34.2"
VERSION_ENV: Final = "LLBLIB_BUILDKIT_VERSION"
CACHE_ENV: Final = "LLBLIB_CACHE_DIR"
BUILDKIT_MODULE: Final = "github.com/moby/buildkit"

# Where to look for `go` when it is not on PATH (the official tarball's location).
GO_FALLBACKS: tuple[str, ...] = ("/usr/local/go/bin/go",)
BUILD_TIMEOUT: float = 45 * 60

_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")


@dataclass(frozen=True)
class BuildkitBinaries:
    """Paths of a buildkitd/buildctl pair and the BuildKit version they were built at."""

    version: str
    buildkitd: Path
    buildctl: Path

    @property
    def directory(self) -> Path:
        return self.buildkitd.parent


def default_buildkit_version() -> str:
    """``$LLBLIB_BUILDKIT_VERSION`` if set, else :data:`BUILDKIT_VERSION`."""
    return os.environ.get(VERSION_ENV) or BUILDKIT_VERSION


def default_cache_root() -> Path:
    """``$LLBLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/llblib-async`` (``~/.cache/llblib-async``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llblib-async"


def default_cache_dir(version: str) -> Path:
    """The directory holding the binaries of one version: ``<cache root>/buildkit-<version>/bin``."""
    return default_cache_root() / f"buildkit-{version}" / "bin"


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in ("buildkitd", "buildctl"))


def _find_go() -> str:
    found = shutil.which("go") or next((g for g in GO_FALLBACKS if os.access(g, os.X_OK)), None)
    if found is None:
        raise PrerequisiteError(
            "building buildkitd needs the Go toolchain (`go`), which is not on PATH or in "
            f"{', '.join(GO_FALLBACKS)}; install Go from https://go.dev/dl/ (tar -C /usr/local -xzf "
            "go*.linux-amd64.tar.gz; export PATH=$PATH:/usr/local/go/bin); Debian 12's golang-go (1.19) is "
            "too old, while any Go >= 1.21 fetches the toolchain buildkit needs itself with GOTOOLCHAIN=auto"
        )
    return found


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_go(
    go: str, args: list[str], *, cwd: Path, log_path: Path, timeout: float, env: dict[str, str] | None = None
) -> str:
    """Run a go command with stderr appended to ``log_path``; return stdout."""
    with open(log_path, "ab") as log_file:
        log_file.write(f"$ go {' '.join(args)}  (in {cwd})\n".encode())
        log_file.flush()
        try:
            proc = subprocess.run(
                [go, *args],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise PrerequisiteError(
                f"`go {args[0]}` did not finish within {timeout:.0f}s; log:\n{log_tail(log_path)}"
            ) from err
    if proc.returncode != 0:
        tail = log_tail(log_path)
        hint = ""
        if "requires go >=" in tail or "GOTOOLCHAIN" in tail:
            hint = " (the installed Go is too old: install a newer one or set GOTOOLCHAIN=auto)"
        raise PrerequisiteError(f"`go {args[0]}` failed with status {proc.returncode}{hint}; log:\n{tail}")
    return proc.stdout.decode()


def _build(version: str, target: Path) -> None:
    go = _find_go()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    build_log = staging / "build.log"
    try:
        out_dir = staging / "bin"
        out_dir.mkdir()
        started = time.monotonic()
        log.info("building buildkitd/buildctl %s into %s (minutes on a cold Go cache)", version, target)
        info = json.loads(
            _run_go(
                go,
                ["mod", "download", "-json", f"{BUILDKIT_MODULE}@{version}"],
                cwd=staging,
                log_path=build_log,
                timeout=BUILD_TIMEOUT,
            )
        )
        source = info.get("Dir")
        if not source:
            raise PrerequisiteError(f"`go mod download` gave no source directory for {version}: {info}")
        ldflags = f"-X {BUILDKIT_MODULE}/version.Version={version}"
        _run_go(
            go,
            [
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(out_dir) + "/",
                "./cmd/buildkitd",
                "./cmd/buildctl",
            ],
            cwd=Path(source),
            log_path=build_log,
            timeout=BUILD_TIMEOUT,
        )
        if not _complete(out_dir):
            raise PrerequisiteError(
                f"go build succeeded but left no buildkitd/buildctl; log:\n{log_tail(build_log)}"
            )
        if target.exists():  # an incomplete cache from an older, non-atomic build
            shutil.rmtree(target)
        out_dir.rename(target)  # atomic: the cache is either complete or absent
        log.info("built BuildKit %s in %.0fs", version, time.monotonic() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_buildkit_binaries(version: str | None = None, cache_dir: Path | None = None) -> BuildkitBinaries:
    """Return buildkitd/buildctl at ``version``, building them into ``cache_dir`` if needed.

    ``version`` defaults to :func:`default_buildkit_version`, ``cache_dir`` to
    :func:`default_cache_dir`.  Raises :class:`~llblib_async.testing.PrerequisiteError`
    when Go is missing or the build fails (with the build log's tail).
    """
    version = version or default_buildkit_version()
    if not _VERSION_RE.match(version):
        raise ValueError(f"not a BuildKit release version: {version!r} (expected e.g. {BUILDKIT_VERSION!r})")
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir(version)
    if not _complete(target):
        with _locked(target.parent / f".{target.name}.lock"):
            if not _complete(target):  # another process may have built it while we waited
                _build(version, target)
    return BuildkitBinaries(version=version, buildkitd=target / "buildkitd", buildctl=target / "buildctl")


DOCKERFILE_FRONTEND_PACKAGE: Final = "./frontend/dockerfile/cmd/dockerfile-frontend"


def default_frontend_dir(version: str) -> Path:
    """Where BuildKit's Dockerfile frontend of one version is cached:
    ``<cache root>/buildkit-<version>/frontend``."""
    return default_cache_root() / f"buildkit-{version}" / "frontend"


def _build_frontend(version: str, target: Path) -> None:
    """Build BuildKit's Dockerfile frontend (``dockerfile-frontend``) at ``version`` into ``target``.

    Statically linked (``CGO_ENABLED=0``, the tags of BuildKit's own release build), as it
    runs alone in a ``FROM scratch`` image.
    """
    go = _find_go()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    build_log = staging / "build.log"
    try:
        out_dir = staging / "frontend"
        out_dir.mkdir()
        info = json.loads(
            _run_go(
                go,
                ["mod", "download", "-json", f"{BUILDKIT_MODULE}@{version}"],
                cwd=staging,
                log_path=build_log,
                timeout=BUILD_TIMEOUT,
            )
        )
        source = info.get("Dir")
        if not source:
            raise PrerequisiteError(f"`go mod download` gave no source directory for {version}: {info}")
        _run_go(
            go,
            [
                "build",
                "-trimpath",
                "-tags",
                "netgo static_build osusergo",
                "-ldflags",
                f"-X main.Version={version}",
                "-o",
                str(out_dir / "dockerfile-frontend"),
                DOCKERFILE_FRONTEND_PACKAGE,
            ],
            cwd=Path(source),
            log_path=build_log,
            timeout=BUILD_TIMEOUT,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
        if not os.access(out_dir / "dockerfile-frontend", os.X_OK):
            raise PrerequisiteError(f"go build left no dockerfile-frontend; log:\n{log_tail(build_log)}")
        if target.exists():
            shutil.rmtree(target)
        out_dir.rename(target)  # atomic: the cache is either complete or absent
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_dockerfile_frontend(version: str | None = None, cache_dir: Path | None = None) -> Path:
    """BuildKit's Dockerfile frontend binary at ``version`` (default: the pinned one), built once and cached.

    It is what ``docker/dockerfile:<version>`` images run; tests put it in an image on the
    loopback registry and run it as a ``gateway.v0`` frontend. Raises
    :class:`~llblib_async.testing.PrerequisiteError` when Go is missing or the build fails.
    """
    version = version or default_buildkit_version()
    if not _VERSION_RE.match(version):
        raise ValueError(f"not a BuildKit release version: {version!r} (expected e.g. {BUILDKIT_VERSION!r})")
    target = Path(cache_dir) if cache_dir is not None else default_frontend_dir(version)
    binary = target / "dockerfile-frontend"
    if not os.access(binary, os.X_OK):
        with _locked(target.parent / f".{target.name}.lock"):
            if not os.access(binary, os.X_OK):
                _build_frontend(version, target)
    return binary
