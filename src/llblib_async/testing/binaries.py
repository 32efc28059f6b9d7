"""buildkitd, buildctl, the Dockerfile frontend and runc, built from source at pinned versions, cached.

There are no distro packages of a current BuildKit and no Docker Hub on the CI machines,
but the Go module proxy is reachable, so the binaries are built from the module source.
``go install github.com/moby/buildkit/cmd/buildkitd@vX`` does not work: buildkit's go.mod
has ``exclude`` directives, which ``go install pkg@version`` refuses.  Instead the module
is downloaded (``go mod download -json``) and built inside its source directory.

The build takes minutes on a cold Go cache, so the result is cached per version and
reused while both binaries are present and executable.  It is built into a temporary
sibling directory and renamed into place, so an interrupted build never leaves a cache
that looks complete; a file lock serialises concurrent builders (parallel test workers).

runc (buildkitd's OCI worker runtime) is taken from ``/usr/sbin/runc`` (``$LLBLIB_RUNC``)
when it is there, and otherwise built the same way from ``github.com/opencontainers/runc``
at :data:`RUNC_VERSION` (see :func:`ensure_runc`), so a machine with only Go and Python
can run buildkitd.
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
import sys
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

#: The runc release built when there is no system runc (runc >= 1.5 needs Go >= 1.25,
#: which ``GOTOOLCHAIN=auto`` fetches).
RUNC_VERSION: Final = "v1.5.3"
RUNC_MODULE: Final = "github.com/opencontainers/runc"
#: Where the system runc is looked for (Debian's ``runc`` package); ``$LLBLIB_RUNC`` overrides it.
SYSTEM_RUNC: Final = "/usr/sbin/runc"
RUNC_ENV: Final = "LLBLIB_RUNC"
LIBSECCOMP_MODULE: Final = "github.com/seccomp/libseccomp"
# Where the runtime libseccomp is looked for (Debian: a dependency of apt, always installed).
LIBSECCOMP_DIRS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib",
)
_LIBSECCOMP_RE = re.compile(r"^libseccomp\.so\.(\d+)\.(\d+)\.(\d+)$")

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


def _say(message: str) -> None:
    """Progress of a provisioning step the user waits for: logged, and on stderr."""
    log.info("%s", message)
    print(f"llblib-async: {message}", file=sys.stderr, flush=True)


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
        _say(
            f"building buildkitd/buildctl {version} from the Go module proxy into {target} "
            "(minutes on a cold Go cache)"
        )
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
        _say(f"built BuildKit {version} in {time.monotonic() - started:.0f}s")
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


# --------------------------------------------------------------------------------------
# runc


def default_runc_version() -> str:
    return RUNC_VERSION


def default_runc_cache_dir(version: str = RUNC_VERSION) -> Path:
    """Where a built runc is cached: ``<cache root>/runc-<version>`` (the file ``runc`` in it)."""
    return default_cache_root() / f"runc-{version}"


def system_runc() -> Path:
    """The system runc looked for first: ``$LLBLIB_RUNC``, else ``/usr/sbin/runc``."""
    return Path(os.environ.get(RUNC_ENV) or SYSTEM_RUNC)


def find_libseccomp(dirs: tuple[str, ...] | None = None) -> tuple[Path, tuple[int, int, int]] | None:
    """The runtime ``libseccomp.so.X.Y.Z`` and its version, or None."""
    for directory in LIBSECCOMP_DIRS if dirs is None else dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            match = _LIBSECCOMP_RE.match(name)
            if match:
                major, minor, micro = (int(g) for g in match.groups())
                return Path(directory) / name, (major, minor, micro)
    return None


def _has_seccomp_headers() -> bool:
    """True when ``pkg-config`` knows libseccomp (Debian: ``libseccomp-dev`` is installed)."""
    pkg_config = shutil.which("pkg-config")
    if pkg_config is None:
        return False
    proc = subprocess.run([pkg_config, "--exists", "libseccomp"], check=False, stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def _seccomp_build_env(
    go: str, staging: Path, build_log: Path, libseccomp_dirs: tuple[str, ...] | None
) -> dict[str, str]:
    """A pkg-config setup for runc's ``seccomp`` build tag without ``libseccomp-dev``.

    runc built without the ``seccomp`` tag cannot start a single build step: buildkitd
    always gives its containers the default seccomp profile (when the kernel has seccomp),
    and such a runc answers "seccomp: config provided but seccomp not supported".  The
    runtime library is there on every Debian (apt depends on it); the headers are not.
    They come from the libseccomp source on the Go module proxy at the runtime library's
    version (``seccomp.h`` is generated from ``seccomp.h.in`` as libseccomp's configure
    does), and a private ``libseccomp.pc`` points the compiler at them and the linker at
    the runtime library.
    """
    found = find_libseccomp(libseccomp_dirs)
    if found is None:
        raise PrerequisiteError(
            "building runc needs libseccomp (buildkitd runs every build step under a seccomp "
            "profile), which is missing: `apt-get install -y libseccomp2` (or libseccomp-dev), "
            f"or install runc itself at {SYSTEM_RUNC} (`apt-get install -y runc`)"
        )
    library, (major, minor, micro) = found
    module = f"{LIBSECCOMP_MODULE}@v{major}.{minor}.{micro}+incompatible"
    info = json.loads(
        _run_go(
            go, ["mod", "download", "-json", module], cwd=staging, log_path=build_log, timeout=BUILD_TIMEOUT
        )
    )
    source = Path(info.get("Dir") or "")
    template = source / "include" / "seccomp.h.in"
    if not template.is_file():
        raise PrerequisiteError(f"`go mod download {module}` gave no include/seccomp.h.in: {info}")
    prefix = staging / "libseccomp"
    for sub in ("include", "pkgconfig"):
        (prefix / sub).mkdir(parents=True)
    header = (
        template.read_text()
        .replace("@VERSION_MAJOR@", str(major))
        .replace("@VERSION_MINOR@", str(minor))
        .replace("@VERSION_MICRO@", str(micro))
    )
    (prefix / "include" / "seccomp.h").write_text(header)
    shutil.copyfile(source / "include" / "seccomp-syscalls.h", prefix / "include" / "seccomp-syscalls.h")
    # Go's build cache keys cgo packages by CGO_CFLAGS but not by pkg-config's output, and
    # keeps the link flags it got: so the header directory goes into CGO_CFLAGS (a new key
    # for a new directory) and the library is named in its own, stable directory.
    (prefix / "pkgconfig" / "libseccomp.pc").write_text(
        f"Name: libseccomp\nDescription: headers of {module} for {library}\n"
        f"Version: {major}.{minor}.{micro}\nCflags:\nLibs: -L{library.parent} -l:libseccomp.so.{major}\n"
    )
    path = os.environ.get("PKG_CONFIG_PATH")
    return {
        "PKG_CONFIG_PATH": str(prefix / "pkgconfig") + (os.pathsep + path if path else ""),
        "CGO_CFLAGS": f"{os.environ.get('CGO_CFLAGS', '-O2 -g')} -I{prefix / 'include'}",
    }


def _build_runc(version: str, target: Path, missing: Path, libseccomp_dirs: tuple[str, ...] | None) -> None:
    go = _find_go()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    build_log = staging / "build.log"
    try:
        started = time.monotonic()
        _say(f"no runc at {missing}: building runc {version} from the Go module proxy into {target}")
        info = json.loads(
            _run_go(
                go,
                ["mod", "download", "-json", f"{RUNC_MODULE}@{version}"],
                cwd=staging,
                log_path=build_log,
                timeout=BUILD_TIMEOUT,
            )
        )
        source = info.get("Dir")
        if not source:
            raise PrerequisiteError(f"`go mod download` gave no source directory for runc {version}: {info}")
        # runc's Makefile builds with `seccomp urfave_cli_no_docs libpathrs`; libpathrs needs a
        # Rust library nobody has, and is optional.  cgo is required (nsenter is C).
        env = {**os.environ, "CGO_ENABLED": "1"}
        if not _has_seccomp_headers():
            env.update(_seccomp_build_env(go, staging, build_log, libseccomp_dirs))
        out = staging / "out"
        out.mkdir()
        _run_go(
            go,
            [
                "build",
                "-trimpath",
                "-buildvcs=false",
                "-tags",
                "seccomp urfave_cli_no_docs",
                "-ldflags",
                f"-X main.version={version.removeprefix('v')}",
                "-o",
                str(out / "runc"),
                ".",
            ],
            cwd=Path(source),
            log_path=build_log,
            timeout=BUILD_TIMEOUT,
            env=env,
        )
        if not os.access(out / "runc", os.X_OK):
            raise PrerequisiteError(f"go build succeeded but left no runc; log:\n{log_tail(build_log)}")
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)  # atomic: the cache is either complete or absent
        _say(f"built runc {version} in {time.monotonic() - started:.0f}s")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_runc(
    *,
    system: Path | str | None = None,
    version: str | None = None,
    cache_dir: Path | None = None,
    libseccomp_dirs: tuple[str, ...] | None = None,
) -> Path:
    """The runc for buildkitd's OCI worker: the system one, else one built and cached.

    ``system`` (default :func:`system_runc`: ``$LLBLIB_RUNC`` or ``/usr/sbin/runc``) is
    used when it is an executable.  Otherwise runc ``version`` (default
    :data:`RUNC_VERSION`) is built with Go from the module proxy into ``cache_dir``
    (default :func:`default_runc_cache_dir`), once: later calls find it there.  The build
    needs cgo (gcc) and the runtime libseccomp (``libseccomp_dirs`` says where to look for
    it), not its headers.  Raises :class:`~llblib_async.testing.PrerequisiteError` when
    that cannot work, naming what to install.
    """
    candidate = Path(system) if system is not None else system_runc()
    if os.access(candidate, os.X_OK) and candidate.is_file():
        return candidate
    version = version or RUNC_VERSION
    if not _VERSION_RE.match(version):
        raise ValueError(f"not a runc release version: {version!r} (expected e.g. {RUNC_VERSION!r})")
    target = Path(cache_dir) if cache_dir is not None else default_runc_cache_dir(version)
    runc = target / "runc"
    if not os.access(runc, os.X_OK):
        with _locked(target.parent / f".{target.name}.lock"):
            if not os.access(runc, os.X_OK):
                _build_runc(version, target, candidate, libseccomp_dirs)
    return runc
