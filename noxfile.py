"""Every project task: ``nox -s demo``, ``nox -s tests``, ``nox -s lint``, ``nox -s codegen``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"

TEST_DEPS = ["pytest>=8", "pytest-asyncio==1.5.0", "pytest-timeout>=2.3"]
LINT_DEPS = ["ruff==0.17.5", "mypy==2.4.1", "types-PyYAML", "nox"]
CODEGEN_DEPS = [
    "betterproto2-compiler==0.10.1",
    "grpcio-tools==1.85.1",
    "googleapis-common-protos==1.76.0",
    "ruff==0.17.5",
]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite: unit tests and integration tests against real daemons.

    The fixtures build buildkitd (cached) and start buildkitd, a registry and
    dockerd themselves; run as root (``.ci/install-prereqs.sh`` installs the rest).
    """
    session.install("-e", ".", *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["-ra"]))


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A real build end to end, on $BUILDKIT_HOST or on a buildkitd started for the demo."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy --strict."""
    session.install("-e", ".", *TEST_DEPS, *LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict")


@nox.session(python=PYTHON)
def codegen(session: nox.Session) -> None:
    """Regenerate llblib_async._pb from the pinned upstream .proto files (``-- --check`` to verify)."""
    session.install(*CODEGEN_DEPS)
    session.run("python", "codegen/generate.py", *session.posargs)
