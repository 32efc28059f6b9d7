"""pytest plugin: fixtures with real daemons.  Opt-in: installing llblib-async loads nothing.

Enable it in the top-level ``conftest.py`` of the tests that want it::

    pytest_plugins = ["llblib_async.testing.plugin"]

or per run with ``pytest -p llblib_async.testing.plugin``.

Session scope: ``buildkit_binaries``, ``buildkit_daemon`` (a :class:`BuildkitDaemon`),
``buildkit_address`` (str), ``buildkit_registry``, ``buildkit_auth_registry`` and
``buildkit_token_registry`` (:class:`Registry`; the latter two with basic auth / bearer
tokens from a token server in this process, credentials in ``.auth``),
``buildkit_busybox_rootfs`` (Path), ``buildkit_dockerd`` (:class:`DockerDaemon`),
``buildkit_busybox_image`` (a :class:`~llblib_async.testing.images.PushedImage` in
``buildkit_registry``).  Function scope: ``buildkit_fresh_daemon``, a private buildkitd a
test may kill.

The fixtures are synchronous (the daemons are subprocesses) and so work with any event
loop scope.  A missing prerequisite makes the fixture *fail* with the install command -
never skip: a green run must mean the integration tests ran.  When a test fails, the
tails of the logs of the daemons it used are added to its report.

``--buildkit-addr ADDR`` (or ``$LLBLIB_BUILDKIT_ADDR``) makes ``buildkit_address`` return
an already-running daemon's address instead of starting one; tests that ask for the
``buildkit_daemon`` object itself still get a private daemon.  ``--buildkitd-debug``
starts the test buildkitd daemons with ``--debug``.

Each fixture imports the module of its daemon when it first runs, so loading the plugin
adds next to nothing to pytest's start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from .prerequisite import PrerequisiteError

if TYPE_CHECKING:
    from .binaries import BuildkitBinaries
    from .buildkitd import BuildkitDaemon
    from .docker_registry import Registry
    from .dockerd import DockerDaemon
    from .images import PushedImage

ADDR_ENV = "LLBLIB_BUILDKIT_ADDR"
_LOGGED_FIXTURES = (
    "buildkit_fresh_daemon",
    "buildkit_daemon",
    "buildkit_dockerd",
    "buildkit_registry",
    "buildkit_auth_registry",
    "buildkit_token_registry",
)

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llblib-async", "llblib-async test daemons")
    group.addoption(
        "--buildkit-addr",
        dest="llblib_buildkit_addr",
        default=None,
        help=f"use this running BuildKit for the buildkit_address fixture (default: ${ADDR_ENV})",
    )
    group.addoption(
        "--buildkitd-debug",
        dest="llblib_buildkitd_debug",
        action="store_true",
        help="start the test buildkitd daemons with --debug (more detail in their logs)",
    )


def _provision(make: Callable[[], T]) -> T:
    """Turn a missing prerequisite into a fixture failure that says how to install it."""
    try:
        return make()
    except PrerequisiteError as err:
        pytest.fail(f"missing test prerequisite: {err}", pytrace=False)


def _debug(config: pytest.Config) -> bool:
    return bool(config.getoption("llblib_buildkitd_debug"))


@pytest.fixture(scope="session")
def buildkit_binaries() -> BuildkitBinaries:
    """buildkitd/buildctl at the pinned version (built with Go on first use, then cached)."""
    from .binaries import ensure_buildkit_binaries

    return _provision(ensure_buildkit_binaries)


def _start_buildkitd(request: pytest.FixtureRequest) -> BuildkitDaemon:
    from .buildkitd import BuildkitDaemon

    _provision(BuildkitDaemon.check_prerequisites)  # before a build that may take minutes
    binaries: BuildkitBinaries = request.getfixturevalue("buildkit_binaries")
    return _provision(lambda: BuildkitDaemon.start(binaries=binaries, debug=_debug(request.config)))


@pytest.fixture(scope="session")
def buildkit_daemon(request: pytest.FixtureRequest) -> Iterator[BuildkitDaemon]:
    """A private buildkitd shared by the whole session.  Tests must not kill or reconfigure it."""
    daemon = _start_buildkitd(request)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def buildkit_address(request: pytest.FixtureRequest) -> str:
    """Address of the BuildKit to test against: ``--buildkit-addr`` / ``$LLBLIB_BUILDKIT_ADDR``
    if given, else the session ``buildkit_daemon``'s unix socket (started on demand)."""
    external = request.config.getoption("llblib_buildkit_addr") or os.environ.get(ADDR_ENV)
    if external:
        return str(external)
    daemon: BuildkitDaemon = request.getfixturevalue("buildkit_daemon")
    return daemon.address


@pytest.fixture
def buildkit_fresh_daemon(request: pytest.FixtureRequest) -> Iterator[BuildkitDaemon]:
    """A private buildkitd for one test, which may kill it; cleaned up (mounts too) afterwards."""
    daemon = _start_buildkitd(request)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def buildkit_registry() -> Iterator[Registry]:
    """An anonymous registry at ``buildkit_registry.host`` (127.0.0.1:PORT), plain HTTP."""
    from .docker_registry import Registry

    reg = _provision(Registry.start)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def buildkit_auth_registry() -> Iterator[Registry]:
    """A registry requiring basic auth; the credentials are ``buildkit_auth_registry.auth``."""
    from .docker_registry import Registry

    reg = _provision(lambda: Registry.start(auth=("llblib", "llblib-test-password")))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def buildkit_token_registry() -> Iterator[Registry]:
    """A registry with token auth (``auth: token``): clients get bearer tokens from
    ``buildkit_token_registry.token_server`` (a
    :class:`~llblib_async.testing.token_server.TokenServer` in this process, which records
    who asked) with the credentials ``buildkit_token_registry.auth``."""
    from .docker_registry import Registry

    reg = _provision(lambda: Registry.start(auth=("llblib", "llblib-token-password"), token_auth=True))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def buildkit_busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal busybox root filesystem (read-only by convention: it is shared)."""
    from .rootfs import busybox_rootfs

    dest = tmp_path_factory.mktemp("busybox-rootfs")
    return _provision(lambda: busybox_rootfs(dest))


@pytest.fixture(scope="session")
def buildkit_dockerd() -> Iterator[DockerDaemon]:
    """A private dockerd 20.10 with BuildKit enabled; ``buildkit_dockerd.host`` is its unix:// address."""
    from .dockerd import DockerDaemon

    daemon = _provision(DockerDaemon.start)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tails of the daemons a failed test used to its report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in _LOGGED_FIXTURES:
            daemon = funcargs.get(name)
            tail = getattr(daemon, "log_tail", None)
            if callable(tail):
                report.sections.append((f"{name} log (last lines)", str(tail())))
    return report


@pytest.fixture(scope="session")
def buildkit_busybox_image(
    request: pytest.FixtureRequest, buildkit_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> PushedImage:
    """A busybox image (``FROM scratch`` + the busybox rootfs) pushed to ``buildkit_registry``.

    Built and pushed once per session by the project's Go ``buildctl`` through the
    session ``buildkit_daemon``; ``.ref`` is ``127.0.0.1:PORT/busybox:latest``,
    ``.digest`` its manifest digest, ``.pinned_ref`` the ref by digest.
    """
    from .images import push_busybox_image

    binaries: BuildkitBinaries = request.getfixturevalue("buildkit_binaries")
    daemon: BuildkitDaemon = request.getfixturevalue("buildkit_daemon")
    rootfs: Path = request.getfixturevalue("buildkit_busybox_rootfs")
    workdir = tmp_path_factory.mktemp("busybox-image")
    return _provision(
        lambda: push_busybox_image(
            buildctl=binaries.buildctl,
            address=daemon.address,
            rootfs=rootfs,
            registry_host=buildkit_registry.host,
            workdir=workdir,
        )
    )


@pytest.fixture(scope="session")
def buildkit_dockerfile_frontend_image(
    request: pytest.FixtureRequest, buildkit_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> PushedImage:
    """BuildKit's own Dockerfile frontend, in an image on ``buildkit_registry``.

    The frontend (``frontend/dockerfile/cmd/dockerfile-frontend``) is built with Go at the
    pinned BuildKit version (cached next to buildkitd, like it), put in a ``FROM scratch``
    image with the labels of BuildKit's release image and pushed by Go ``buildctl``; run it
    with ``llb.frontend(image.ref, ...)`` (``gateway.v0``) or ``llb.dockerfile(...,
    frontend=image.ref)``.
    """
    from .binaries import default_buildkit_version, ensure_dockerfile_frontend
    from .images import push_dockerfile_frontend_image

    binaries: BuildkitBinaries = request.getfixturevalue("buildkit_binaries")
    daemon: BuildkitDaemon = request.getfixturevalue("buildkit_daemon")
    workdir = tmp_path_factory.mktemp("dockerfile-frontend-image")
    return _provision(
        lambda: push_dockerfile_frontend_image(
            buildctl=binaries.buildctl,
            address=daemon.address,
            binary=ensure_dockerfile_frontend(default_buildkit_version()),
            registry_host=buildkit_registry.host,
            workdir=workdir,
            tag=default_buildkit_version(),
        )
    )
