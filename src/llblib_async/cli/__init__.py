"""The ``llblib-async`` command (also ``python -m llblib_async``).

Commands: ``info``, ``workers``, ``du``, ``prune``, ``daemon start|stop|status``,
``build SCRIPT.py`` and ``dump SCRIPT.py``; each takes ``--addr`` (default
``$BUILDKIT_HOST``, else the daemon of ``llblib-async daemon start``, else the default
buildkitd socket / Docker) and ``--progress`` (``auto``, ``tty``, ``tty-fullscreen``,
``plain``, ``rawjson``, ``quiet``; default ``$BUILDKIT_PROGRESS`` or ``auto``).
How a script exposes its requests: the docstring of ``llblib_async.cli._script`` and docs/cli.md.

Exit codes (:class:`Exit`): 0 success; 1 the build failed; 2 bad usage (unknown
option, bad progress mode); 3 the daemon could not be reached; 4 the build script
could not be loaded or broke the convention; 5 a feature this installation lacks
(``--debug-on-error`` before debug shells exist); 6 ``daemon start`` failed;
130 interrupted.  Other errors of llblib-async (e.g. an export that failed) exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import llb
from ..client import Client, connect
from ..errors import BuildKitError, DaemonUnreachableError, ProgressModeError, SolveError
from ..progress import MODES, open_progress, resolve_mode
from ..solver import Solver
from . import daemon as daemon_mod
from ._script import ScriptError, load_requests

__all__ = ["Exit", "main"]


class Exit(enum.IntEnum):
    """The documented exit codes of ``llblib-async``."""

    OK = 0
    BUILD_FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    SCRIPT = 4
    UNAVAILABLE = 5
    DAEMON = 6
    INTERRUPTED = 130


class _Fail(Exception):
    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


def _common(default: Any) -> argparse.ArgumentParser:
    # Subcommands take the options too, with SUPPRESS so they do not reset a value
    # given before the command (`llblib-async --addr X info`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--addr",
        default=default,
        help="BuildKit address (unix://, tcp://, docker-container://, docker+unix://); "
        "default: $BUILDKIT_HOST, else the daemon of `llblib-async daemon start`, else the default socket",
    )
    common.add_argument(
        "--progress",
        default=default,
        choices=MODES,
        help="progress display (default: $BUILDKIT_PROGRESS, else auto: tty on a terminal, plain otherwise)",
    )
    return common


def parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    p = argparse.ArgumentParser(
        prog="llblib-async",
        description="Talk to BuildKit and run Python build scripts.",
        parents=[_common(None)],
        epilog="exit codes: 0 ok, 1 build failed, 2 usage, 3 daemon unreachable, 4 script error, "
        "5 not available, 6 daemon start failed, 130 interrupted",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", parents=[common], help="the daemon's version")
    sub.add_parser("workers", parents=[common], help="the daemon's workers and platforms")
    du = sub.add_parser("du", parents=[common], help="build cache records and their size")
    du.add_argument("--filter", action="append", default=[], help="containerd-style filter (repeatable)")
    du.add_argument("--json", action="store_true", help="one JSON object per record")
    prune = sub.add_parser("prune", parents=[common], help="delete build cache")
    prune.add_argument("--all", action="store_true", help="also internal and frontend records")
    prune.add_argument("--keep-duration", type=float, default=0.0, metavar="SECONDS")
    prune.add_argument("--filter", action="append", default=[])
    d = sub.add_parser("daemon", parents=[common], help="the local buildkitd this project provisions")
    d.add_argument("action", choices=["start", "stop", "status"])
    b = sub.add_parser("build", parents=[common], help="run the requests of a Python build script")
    b.add_argument("script", type=Path, help="a .py file defining build_requests(solver)")
    b.add_argument(
        "--debug-on-error", action="store_true", help="open a shell in the failed step (interactive)"
    )
    dump = sub.add_parser("dump", parents=[common], help="the YAML of the graphs a build script builds")
    dump.add_argument("script", type=Path)
    dump.add_argument(
        "--session",
        action="store_true",
        help="dump through a session on the daemon: frontends (Dockerfiles) resolved, as Go's Session.ToYAML",
    )
    return p


def _address(args: argparse.Namespace) -> str | None:
    if args.addr:
        return str(args.addr)
    if os.environ.get("BUILDKIT_HOST"):
        return None  # connect() reads it
    state = daemon_mod.read_state()
    return state.address if state is not None else None


def _client(args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Client]:
    return connect(_address(args))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


async def _info(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        info = await client.info()
        print(f"address:  {client.address}")
        print(f"version:  {info.version or '(embedded in Docker)'}")
        if info.package:
            print(f"package:  {info.package}")
        if info.revision:
            print(f"revision: {info.revision}")
    return Exit.OK


async def _workers(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        workers = await client.list_workers()
    for w in workers:
        platforms = ",".join(str(p) for p in w.platforms)
        print(f"{w.id}\t{platforms}")
    return Exit.OK


async def _du(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        records = await client.disk_usage(*args.filter)
    total = 0
    if not args.json:
        print(f"{'ID':<28} {'RECLAIMABLE':<12} {'SIZE':>10}  DESCRIPTION")
    for r in records:
        total += r.size
        if args.json:
            print(json.dumps({"id": r.id, "size": r.size, "in_use": r.in_use, "description": r.description}))
        else:
            reclaimable = "false" if r.in_use else "true"
            print(f"{r.id[:28]:<28} {reclaimable:<12} {_size(r.size):>10}  {r.description}")
    if not args.json:
        print(f"Total: {_size(total)}")
    return Exit.OK


async def _prune(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        records = await client.prune(all=args.all, keep_duration_s=args.keep_duration, filters=args.filter)
    total = sum(r.size for r in records)
    for r in records:
        print(f"{r.id[:28]:<28} {_size(r.size):>10}")
    print(f"Total: {_size(total)}")
    return Exit.OK


def _daemon(args: argparse.Namespace) -> Exit:
    if args.action == "start":
        try:
            state = daemon_mod.start()
        except Exception as err:
            raise _Fail(Exit.DAEMON, f"cannot start buildkitd: {err}") from err
        print(state.address)
        return Exit.OK
    if args.action == "stop":
        print("stopped" if daemon_mod.stop() else "not running")
        return Exit.OK
    running = daemon_mod.status()
    if running is None:
        print("not running")
        return Exit.UNREACHABLE
    print(
        f"running: {running.address} (buildkitd {running.version}, "
        f"pid {running.daemon_pid}, log {running.log_path})"
    )
    return Exit.OK


def _on_error_options(args: argparse.Namespace) -> dict[str, Any]:
    if not getattr(args, "debug_on_error", False):
        return {}
    import llblib_async

    on_error = getattr(llblib_async, "OnError", None)
    if on_error is None:
        raise _Fail(
            Exit.UNAVAILABLE,
            "--debug-on-error is not available: this llblib-async has no debug shells (llblib_async.OnError)",
        )
    return {"on_error": on_error()}


async def _build(args: argparse.Namespace) -> Exit:
    options = _on_error_options(args)
    try:
        resolve_mode(args.progress)  # a bad mode is a usage error, before anything runs
    except ProgressModeError as err:
        raise _Fail(Exit.USAGE, str(err)) from err
    solver = Solver()
    try:
        requests = await load_requests(args.script, solver, **options)
    except ScriptError as err:
        raise _Fail(Exit.SCRIPT, str(err)) from err
    except TypeError as err:
        if not options:
            raise
        # llblib_async.OnError exists but requests do not take on_error= (yet)
        raise _Fail(Exit.UNAVAILABLE, f"--debug-on-error is not available: {err}") from err
    failure: BaseException | None = None
    async with (
        _client(args) as client,
        open_progress(args.progress) as progress,
        solver.session(client, progress=progress) as session,
    ):
        results = await asyncio.gather(*(session.do(r) for r in requests), return_exceptions=True)
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, BaseException):
            failure = failure or result
            name = f"[{request.label}] " if request.label else ""
            print(f"error: {name}{result}", file=sys.stderr)
    if failure is not None:
        if isinstance(failure, SolveError | BuildKitError):
            return Exit.BUILD_FAILED
        raise failure
    return Exit.OK


async def _dump(args: argparse.Namespace) -> Exit:
    solver = Solver()
    try:
        requests = await load_requests(args.script, solver)
    except ScriptError as err:
        raise _Fail(Exit.SCRIPT, str(err)) from err
    if args.session:
        async with _client(args) as client, solver.session(client) as session:
            sys.stdout.write(await session.to_yaml(*requests))
        return Exit.OK
    try:
        definitions = [await r.marshal() for r in requests]
    except llb.UnresolvedLazyStateError as err:
        raise _Fail(Exit.BUILD_FAILED, f"{err} (`dump --session` resolves it on the daemon)") from err
    sys.stdout.write(llb.to_yaml(*definitions))
    return Exit.OK


async def _run(args: argparse.Namespace) -> Exit:
    command = args.command
    if command == "info":
        return await _info(args)
    if command == "workers":
        return await _workers(args)
    if command == "du":
        return await _du(args)
    if command == "prune":
        return await _prune(args)
    if command == "build":
        return await _build(args)
    if command == "dump":
        return await _dump(args)
    raise AssertionError(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see :class:`Exit`)."""
    args = parser().parse_args(argv)
    try:
        if args.command == "daemon":
            return int(_daemon(args))
        return int(asyncio.run(_run(args)))
    except _Fail as err:
        print(f"llblib-async: {err}", file=sys.stderr)
        return int(err.code)
    except DaemonUnreachableError as err:
        print(f"llblib-async: {err} (start one with `llblib-async daemon start`)", file=sys.stderr)
        return int(Exit.UNREACHABLE)
    except BuildKitError as err:
        print(f"llblib-async: {err}", file=sys.stderr)
        return int(Exit.BUILD_FAILED)
    except KeyboardInterrupt:
        print("llblib-async: interrupted", file=sys.stderr)
        return int(Exit.INTERRUPTED)
