"""What a container is made of and how its process runs: :class:`ContainerOptions`.

Go llblib's ``ContainerOptions`` is filled by option functions (``WithRun``,
``WithInput``, ``WithOutput``, ``WithTTY``, ``WithSetup``, ``WithTeardown``,
``WithLock``); here it is one frozen dataclass, given as keywords to
``solver.container(root, ...)`` and ``result.container(...)``.

The container part (command, env, cwd, user, hostname, network, security, extra hosts,
mounts, secret env) is exactly what ``root.run(...)`` takes: :meth:`ContainerOptions.exec_state`
builds that exec with the LLB builder, so every mount kind and every check of ``run``
applies, and the container is what the exec would have been.

Deviations from Go llblib:

* options are applied once (Go applies them twice, making two stdin readers for ``WithTTY``);
* the command defaults to the root State's ``with_args`` command, else ``/bin/sh``
  (Go requires one);
* ``WithLock`` is not needed: interactive containers (``terminal=True``) always take
  :func:`llblib_async.terminal.claim_terminal`, the one lock of the local terminal;
* teardown hooks always run, also when a setup hook failed, and are awaited before
  the result is returned (Go races them with the caller).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .. import llb
from ..errors import ContainerError
from ..llb.exec import MountSpec
from ..llb.meta import NetworkMode, SecurityMode
from .process import Input, Output, SetupHook, TeardownHook

__all__ = ["ContainerOptions"]

DEFAULT_SHELL = ("/bin/sh",)


def _frozen_map(value: Mapping[str, str] | None, what: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ContainerError(what, value, "expected a mapping of str to str")
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    """A container on the build worker and its process (see the module docstring).

    Container: ``args`` (a list, or a str split like a shell would without running
    one; default: the root State's command, else ``/bin/sh``), ``env`` (added to the
    root State's), ``cwd``, ``user``, ``hostname``, ``network`` (``"sandbox"``,
    ``"host"``, ``"none"``), ``security`` (``"sandbox"``, ``"insecure"``: needs the
    ``security.insecure`` entitlement), ``extra_hosts`` (name -> IP), ``mounts``
    (``llb.bind``/``cache_mount``/``tmpfs``/``secret_mount``/``ssh_mount``, read-only or
    not), ``secret_env`` (env var -> secret id).

    Process: ``tty`` (a pseudo-terminal; stdout and stderr merge), ``terminal`` (lend
    it the local terminal: raw mode, resizes forwarded, progress paused; implies a
    TTY when the local side is one), ``stdin``/``stdout``/``stderr`` (see
    :data:`llblib_async.gateway.process.Input` / ``Output``; default: no stdin,
    output captured on the result), ``setup`` hooks (called with the started
    :class:`~llblib_async.Process`), ``teardown`` hooks (always called, with the
    :class:`~llblib_async.ProcessResult` or ``None``), ``check`` (a non-zero exit raises
    :class:`~llblib_async.ContainerExitError`), ``keep_mounts`` (mount path -> local
    directory: when the process has exited, the mount -- the root ``/`` or a writable
    bind -- is copied there, and the request's ``SolveResult.mounts[path]`` is an
    ``llb.local`` State of the copy, for later requests; BuildKit itself cannot turn a
    container's mount into a result).
    """

    args: str | Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cwd: str | None = None
    user: str | None = None
    hostname: str | None = None
    network: NetworkMode | None = None
    security: SecurityMode | None = None
    extra_hosts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    mounts: Sequence[MountSpec] = ()
    secret_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tty: bool = False
    terminal: bool = False
    stdin: Input = None
    stdout: Output = "capture"
    stderr: Output = "capture"
    setup: Sequence[SetupHook] = ()
    teardown: Sequence[TeardownHook] = ()
    check: bool = True
    keep_mounts: Mapping[str, str | Path] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.args is not None and not isinstance(self.args, str):
            object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "env", _frozen_map(self.env, "env"))
        object.__setattr__(self, "extra_hosts", _frozen_map(self.extra_hosts, "extra_hosts"))
        object.__setattr__(self, "secret_env", _frozen_map(self.secret_env, "secret_env"))
        object.__setattr__(self, "mounts", tuple(self.mounts))
        if not isinstance(self.keep_mounts, Mapping):
            raise ContainerError(
                "keep_mounts", self.keep_mounts, "expected a mapping of mount path to local dir"
            )
        object.__setattr__(
            self, "keep_mounts", MappingProxyType({k: Path(v) for k, v in self.keep_mounts.items()})
        )
        object.__setattr__(self, "setup", tuple(self.setup))
        object.__setattr__(self, "teardown", tuple(self.teardown))
        for hook in (*self.setup, *self.teardown):
            if not callable(hook):
                raise ContainerError("setup/teardown", hook, "hooks must be async callables")
        if self.terminal and self.stdin is not None:
            raise ContainerError("stdin", self.stdin, "a terminal=True container reads the local terminal")

    def exec_state(self, root: llb.State) -> llb.ExecState:
        """``root.run(...)`` with these options: the exec the container is."""
        if not isinstance(root, llb.State):
            raise ContainerError("root", root, "expected an llb.State")
        args = self.args if self.args is not None else (root.exec_meta.args or DEFAULT_SHELL)
        return root.run(
            args,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            hostname=self.hostname,
            network=self.network,
            security=self.security,
            extra_hosts=self.extra_hosts,
            mounts=self.mounts,
            secret_env=self.secret_env,
        )
