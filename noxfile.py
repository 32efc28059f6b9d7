"""Every project task: ``nox -s demo``, ``nox -s tests``, ``nox -s lint``, ``nox -s codegen``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"

# cryptography: the tests check both Ed25519 backends (OpenSSL and the pure-Python fallback)
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio==1.5.0",
    "pytest-timeout>=2.3",
    "cryptography>=42",
    "pytest-textual-snapshot==1.1.0",
]
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

    First provisions what the suite needs (``llblib_async.testing.provision``): as root on
    Debian it apt-installs the missing Debian packages (registry, dockerd, busybox...),
    saying so; it builds buildkitd (and runc when /usr/sbin/runc is missing) with Go,
    cached.  The fixtures then start buildkitd, a registry and dockerd themselves.
    """
    session.install("-e", ".", *TEST_DEPS)
    session.run("python", "-m", "llblib_async.testing.provision", "tests")
    session.run("pytest", *(session.posargs or ["-ra"]))


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A real build end to end, on $BUILDKIT_HOST or on a buildkitd started for the demo.

    Without a configured BuildKit it provisions buildkitd and runc first (built with Go
    from the module proxy and cached; nothing from apt).
    """
    session.install("-e", ".")
    session.run("python", "-m", "llblib_async.testing.provision", "demo")
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


def _go(session: nox.Session) -> str:
    """The Go toolchain: ``go`` on PATH, else the official tarball's /usr/local/go/bin/go."""
    import os
    import shutil

    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if found is None:
        session.error(
            "the Go toolchain (`go`) is not on PATH nor in /usr/local/go/bin; see .ci/install-prereqs.sh"
        )
    return found


@nox.session(python=False)
def oracle(session: nox.Session) -> None:
    """Regenerate tests/llb_oracle/golden.json with BuildKit's Go client/llb (``-- --check`` to verify).

    Builds and runs the Go oracle (``go run`` in tests/llb_oracle, BuildKit pinned in its
    go.mod).  ``--check`` regenerates into a temporary file and fails on any difference
    from the committed golden.json (CI runs this).  A cold first run downloads and
    compiles client/llb's dependencies (~2-3 min on 2 CPUs); the tests' buildkitd build
    then reuses both (same module versions, same ``-trimpath`` compile).
    """
    import os

    go = _go(session)
    check = "--check" in session.posargs
    env = {"GOFLAGS": (os.environ.get("GOFLAGS", "") + " -mod=mod").strip()}
    with session.chdir("tests/llb_oracle"):
        session.run(
            go,
            "run",
            "-trimpath",  # same build flags as the buildkitd build of the tests: it reuses this compile
            ".",
            *(["-check", "golden.json"] if check else ["-o", "golden.json"]),
            env=env,
            external=True,
        )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: ``nox -s bench`` runs every benchmarks/bench_*.py; ``nox -s bench -- marshal`` one.

    ``upload`` and ``download`` are the two halves of bench_transfer.py (``transfer``: both).

    The arguments from the first one starting with ``-`` on are passed to each benchmark
    (``-- marshal --sizes 1000``, ``-- upload --runs 5``).
    """
    from pathlib import Path

    session.install("-e", ".")
    first_opt = next((i for i, a in enumerate(session.posargs) if a.startswith("-")), len(session.posargs))
    names, extra = session.posargs[:first_opt], session.posargs[first_opt:]  # "--runs 1" keeps its value
    available = sorted(p.stem.removeprefix("bench_") for p in Path("benchmarks").glob("bench_*.py"))
    kinds = {"upload": "transfer", "download": "transfer"}  # bench_transfer.py upload|download
    for name in names or available:
        if name not in available and name not in kinds:
            session.error(f"no benchmark {name!r}; available: {', '.join([*available, *kinds])}")
        script = f"benchmarks/bench_{kinds.get(name, name)}.py"
        session.run("python", script, *([name] if name in kinds else []), *extra)
