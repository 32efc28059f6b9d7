"""A container on the build worker: ``LLBBridge.NewContainer``, processes, ``ReleaseContainer``.

A :class:`Container` belongs to one gateway build (the :class:`~.bridge.Bridge` of a
request); open one with ``async with bridge.container(spec) as ctr`` -- or, from user
code, with a container request (``solver.container(root, ...)``) or
``result.container(...)`` in a result handler. Inside it:

* :meth:`Container.start` starts a process and returns a :class:`~.process.Process`
  (streams, signals, resize, wait); the **first** process is the container's init and
  the others are execs into it, which BuildKit refuses once the init has exited;
* :meth:`Container.run` runs one process to its end, with setup hooks (called with the
  started process) and teardown hooks (always called, with the result or ``None``),
  optionally on the local terminal (``terminal=True``: raw mode, resizes, the terminal
  lock; see :mod:`.local_terminal`), and raises
  :class:`~llblib_async.errors.ContainerExitError` on a non-zero exit when ``check``.

Leaving the block releases the container (its processes are killed); the daemon's
"exit code: N" answer to ``ReleaseContainer`` (the init's status) is not an error.
"""

from __future__ import annotations

import contextlib
import os
import stat as _stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from grpclib.client import Channel

from .._identity import new_id
from .._pb import pb
from .._pb.moby.buildkit.v1 import frontend as gw
from .._wire.grpc_errors import translating_errors
from ..errors import BuildKitError, ContainerError, ContainerExitError
from ..llb.meta import to_args
from ..process_result import ProcessResult
from .container_spec import ContainerSpec
from .filestat import FileStat
from .local_terminal import attach_terminal
from .options import ContainerOptions
from .process import Input, Output, Process, SetupHook, TeardownHook

__all__ = ["RELEASE_TIMEOUT", "Container"]

#: How long releasing a container may take before we stop waiting (it runs shielded).
RELEASE_TIMEOUT = 30.0

_SECURITY = {"sandbox": pb.SecurityMode.SANDBOX, "insecure": pb.SecurityMode.INSECURE}


class Container:
    """A container on the build worker (see the module docstring)."""

    def __init__(
        self,
        *,
        stub: gw.LlbBridgeStub,
        channel: Channel,
        metadata: Sequence[tuple[str, str]],
        address: str,
        spec: ContainerSpec,
        container_id: str | None = None,
    ) -> None:
        self.id = container_id or new_id()
        self.spec = spec
        self._stub = stub
        self._channel = channel
        self._metadata = list(metadata)
        self._address = address
        self._tg: TaskGroup | None = None
        self._processes: list[Process] = []

    async def __aenter__(self) -> Container:
        with translating_errors("LLBBridge.NewContainer", self._address):
            await self._stub.new_container(self.spec.new_container_request(self.id))
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        with anyio.CancelScope(shield=True):
            await self._release()
        if tg is not None:
            # The processes' streams end with the container; their failures are theirs
            # (Process.wait raises them), so the group itself never fails.
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    async def _release(self) -> None:
        with (
            anyio.move_on_after(RELEASE_TIMEOUT),
            contextlib.suppress(BuildKitError),
            translating_errors("LLBBridge.ReleaseContainer", self._address),
        ):
            await self._stub.release_container(gw.ReleaseContainerRequest(container_id=self.id))

    # --- files --------------------------------------------------------------------------

    def _mount_index(self, dest: str) -> int:
        for i, m in enumerate(self.spec.exec.mounts):
            if m.dest == dest:
                return i
        have = [m.dest for m in self.spec.exec.mounts]
        raise ContainerError("mount", dest, f"the container has no such mount (it has {have})")

    async def read_dir(self, path: str, *, mount: str = "/") -> list[FileStat]:
        """The entries of directory ``path`` of the container's mount ``mount``, as it is now."""
        request = gw.ReadDirRequest(ref=self.id, dir_path=path, mount_index=self._mount_index(mount))
        with translating_errors("LLBBridge.ReadDirContainer", self._address):
            response = await self._stub.read_dir_container(request)
        return [FileStat.from_pb(e) for e in response.entries]

    async def read_file(self, path: str, *, mount: str = "/") -> bytes:
        """The content of file ``path`` of the container's mount ``mount``, as it is now."""
        request = gw.ReadFileRequest(ref=self.id, file_path=path, mount_index=self._mount_index(mount))
        with translating_errors("LLBBridge.ReadFileContainer", self._address):
            response = await self._stub.read_file_container(request)
        return bytes(response.data)

    async def copy_mount(self, mount: str, dest: str | Path) -> Path:
        """Copy the container's mount ``mount`` (as it is now) into the local directory ``dest``.

        BuildKit cannot make a result of a container's mount, so this is how what a
        container changed outlives it: ``llb.local(dest)`` is then a State of it
        (``ContainerOptions.keep_mounts`` does this when the process has exited).
        Regular files, directories and symlinks are copied with their permission bits;
        ownership and special files are not.
        """
        root = Path(dest)
        await anyio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
        index = self._mount_index(mount)
        pending = [""]
        while pending:
            rel = pending.pop()
            request = gw.ReadDirRequest(ref=self.id, dir_path="/" + rel, mount_index=index)
            with translating_errors("LLBBridge.ReadDirContainer", self._address):
                response = await self._stub.read_dir_container(request)
            for entry in response.entries:
                st = FileStat.from_pb(entry)
                child = f"{rel}/{st.path}" if rel else st.path
                data = b""
                if st.is_dir:
                    pending.append(child)
                elif _stat.S_ISREG(st.mode):
                    data = await self.read_file("/" + child, mount=mount)
                await anyio.to_thread.run_sync(_write_entry, root / child, st, data)
        return root

    # --- processes -------------------------------------------------------------------------

    def _meta(
        self,
        args: str | Sequence[str] | None,
        env: Mapping[str, str] | None,
        cwd: str | None,
        user: str | None,
    ) -> pb.Meta:
        base = self.spec.meta
        argv = list(to_args(args, what="args")) if args is not None else list(base.args)
        if not argv:
            raise ContainerError("args", args, "a command is needed")
        merged: dict[str, str] = {}
        for item in base.env:
            key, _, value = item.partition("=")
            merged[key] = value
        for key, value in (env or {}).items():
            if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
                raise ContainerError("env", {key: value}, "names and values must be str, names without '='")
            merged[key] = value
        return pb.Meta(
            args=argv,
            env=[f"{k}={v}" for k, v in merged.items()],
            cwd=cwd if cwd is not None else (base.cwd or "/"),
            user=user if user is not None else base.user,
            remove_mount_stubs_recursive=base.remove_mount_stubs_recursive,
        )

    async def start(
        self,
        args: str | Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        tty: bool = False,
        stdin: Input = None,
        stdout: Output = "capture",
        stderr: Output = "capture",
        security: str | None = None,
    ) -> Process:
        """Start a process; it runs until it exits or the container is released.

        ``args`` (a list, or a str split like a shell would without running one)
        defaults to the container's command; ``env`` is added to the container's
        environment; ``cwd`` and ``user`` default to the container's. ``tty`` gives
        the process a pseudo-terminal (stdout and stderr are then one stream on
        ``stdout``; resize it with :meth:`Process.resize`). ``stdin``, ``stdout`` and
        ``stderr`` are described by :data:`~.process.Input` and
        :data:`~.process.Output`. ``security`` (``"sandbox"``/``"insecure"``)
        defaults to the container's.
        """
        if self._tg is None:
            raise ContainerError("container", self.id, "the container is not open (use 'async with')")
        if self._processes and self._processes[0].returncode is not None:
            raise ContainerError(
                "container",
                self.id,
                "its first process (the init) has exited: BuildKit runs no more processes in it",
            )
        if security is not None and security not in _SECURITY:
            raise ContainerError("security", security, "expected 'sandbox' or 'insecure'")
        process = Process(
            channel=self._channel,
            metadata=self._metadata,
            address=self._address,
            container_id=self.id,
            process_id=f"{self.id}:{new_id()[:10]}",
            meta=self._meta(args, env, cwd, user),
            tty=tty,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            security=_SECURITY[security] if security is not None else self.spec.exec.security,
            secret_env=self.spec.exec.secretenv,
        )
        self._tg.start_soon(process._run)
        self._processes.append(process)
        await process._started_or_raise()
        return process

    async def run(
        self,
        args: str | Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        tty: bool = False,
        stdin: Input = None,
        stdout: Output = "capture",
        stderr: Output = "capture",
        security: str | None = None,
        terminal: bool = False,
        setup: Sequence[SetupHook] = (),
        teardown: Sequence[TeardownHook] = (),
        check: bool = True,
    ) -> ProcessResult:
        """Run a process to its end and return its :class:`~llblib_async.ProcessResult`.

        The options are :meth:`start`'s, plus: ``terminal`` lends the process the local
        terminal (stdin/stdout, raw mode, resizes forwarded, the terminal claimed so
        progress pauses; a TTY when the local side is one); ``setup`` hooks run once it
        started, ``teardown`` hooks always run at the end; ``check`` raises
        :class:`~llblib_async.errors.ContainerExitError` on a non-zero exit.
        """
        result: ProcessResult | None = None
        try:
            if terminal:
                result = await self._run_on_terminal(
                    args, env=env, cwd=cwd, user=user, security=security, setup=setup
                )
            else:
                process = await self.start(
                    args,
                    env=env,
                    cwd=cwd,
                    user=user,
                    tty=tty,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    security=security,
                )
                for hook in setup:
                    await hook(process)
                await process.wait()
                result = process.result()
        finally:
            with anyio.CancelScope(shield=True):
                for undo in teardown:
                    await undo(result)
        if check and result.exit_code != 0:
            raise ContainerExitError(result)
        return result

    async def run_with(self, options: ContainerOptions) -> ProcessResult:
        """:meth:`run` with the process settings of ``options`` (its command is the container's);
        then ``options.keep_mounts`` are copied out (:meth:`copy_mount`), whatever the exit code."""
        result = await self.run(
            tty=options.tty,
            stdin=options.stdin,
            stdout=options.stdout,
            stderr=options.stderr,
            terminal=options.terminal,
            setup=options.setup,
            teardown=options.teardown,
            check=False,
        )
        for mount, local in options.keep_mounts.items():
            await self.copy_mount(mount, local)
        if options.check and result.exit_code != 0:
            raise ContainerExitError(result)
        return result

    async def _run_on_terminal(
        self,
        args: str | Sequence[str] | None,
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        user: str | None,
        security: str | None,
        setup: Sequence[SetupHook],
    ) -> ProcessResult:
        async with attach_terminal() as term:
            process = await self.start(
                args,
                env=env,
                cwd=cwd,
                user=user,
                tty=term.is_tty,
                stdin=term.input,
                stdout=term.write,
                stderr=term.write_err,
                security=security,
            )
            if term.is_tty:
                async with term.forwarding_resizes(process.resize):
                    for hook in setup:
                        await hook(process)
                    await process.wait()
            else:
                for hook in setup:
                    await hook(process)
                await process.wait()
            return process.result()


def _write_entry(local: Path, st: FileStat, data: bytes) -> None:
    """One entry of a copied mount: a directory, a symlink or a regular file (others are skipped)."""
    if st.is_dir:
        local.mkdir(exist_ok=True)
        local.chmod(st.mode & 0o7777)
    elif _stat.S_ISLNK(st.mode):
        local.unlink(missing_ok=True)
        os.symlink(st.linkname, local)
    elif _stat.S_ISREG(st.mode):
        local.write_bytes(data)
        local.chmod(st.mode & 0o7777)
