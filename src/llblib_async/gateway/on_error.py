"""Debugging a failed step: :class:`OnError` and the container it opens.

When an exec of a request fails, the daemon's error carries an ``errdefs.Solve``
detail: the failed ``pb.Op`` and, for each of its mounts, the id of a gateway result
holding the mount *as it was when the process failed* (protocol notes §4.5). The
request's ``on_error=OnError(...)`` then runs, before the error is raised:

* scripted: each of ``commands`` runs in its own container on those mounts (so each
  sees the failed state, not the previous command's changes), its output captured;
  the :class:`~llblib_async.ProcessResult` of each lands on the error
  (``SolveError.debug``) or, with ``drop_error=True``, on the
  :class:`~llblib_async.SolveResult` (``.debug``, ``.error``);
* interactive (no commands): ``shell`` runs on the local terminal (raw mode, resizes,
  the terminal claimed so progress pauses and two shells never share the terminal).

``root`` swaps the failed step's root filesystem for another State (a toolbox image
with the debugging tools the step's own image lacks) while its other mounts stay as
they were; ``mounts`` adds mounts (any kind ``State.run`` takes: the pristine sources
to compare with, a scratch directory to copy findings to), replacing a mount of the
failed step at the same path.  This is Go llblib's ``OnError(WithRun(llb.AddMount(...)))``.

It reads nothing but the error, so it works for whatever produced the failing exec:
an LLB graph (however deep the exec), a frontend such as the Dockerfile one.

Deviations from Go llblib: the failed step's env is used *plus* ``env`` (Go ignores
env given to ``OnError``); ``cwd="/"`` can be chosen; the extra mounts are given as
``root``/``mounts`` rather than as run options (``WithRun``), and a mount at ``/`` in
``mounts`` is refused (that is ``root``); a failed op that is not an exec
(a file op) keeps the build error even with ``drop_error`` (Go swallows it silently);
the failed step's security mode is kept (Go drops it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .. import llb
from .._pb import pb
from .._wire.grpc_errors import TYPE_SOLVE, error_details
from ..errors import ContainerError, SolveError
from ..llb.exec import MountSpec
from ..process_result import ProcessResult
from .container import Container
from .container_spec import ContainerSpec

__all__ = ["OnError", "debug_failed_step", "failed_step"]

DEFAULT_SHELL = ("/bin/sh",)


@dataclass(frozen=True, slots=True)
class OnError:
    """What to do in the failed step's container when an exec of a request fails.

    ``commands``: each is a str (run by ``/bin/sh -c``) or an argv list; their output
    is captured. With no commands, ``shell`` runs interactively on the local terminal.
    ``drop_error`` swallows the build error after the debugging (the request then
    succeeds with an empty result; the error is ``SolveResult.error``). ``env`` is
    added to the failed step's environment; ``cwd`` and ``user`` replace its own.
    ``root`` replaces the failed step's root filesystem and ``mounts`` are added (see
    the module docs).
    """

    commands: Sequence[str | Sequence[str]] = ()
    shell: Sequence[str] = DEFAULT_SHELL
    drop_error: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cwd: str | None = None
    user: str | None = None
    root: llb.State | None = None
    mounts: Sequence[MountSpec] = ()

    def __post_init__(self) -> None:
        commands: list[str | tuple[str, ...]] = []
        for c in self.commands if not isinstance(self.commands, str) else [self.commands]:
            if isinstance(c, str):
                commands.append(c)
            elif isinstance(c, Sequence) and c and all(isinstance(a, str) for a in c):
                commands.append(tuple(c))
            else:
                raise ContainerError("commands", c, "each command is a str or a non-empty list of str")
        object.__setattr__(self, "commands", tuple(commands))
        shell = tuple(self.shell)
        if not shell or not all(isinstance(a, str) for a in shell):
            raise ContainerError("shell", self.shell, "expected a non-empty list of str")
        object.__setattr__(self, "shell", shell)
        if not isinstance(self.env, Mapping):
            raise ContainerError("env", self.env, "expected a mapping of str to str")
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        if self.root is not None and not isinstance(self.root, llb.State):
            raise ContainerError("root", self.root, "expected an llb.State")
        mounts = tuple(self.mounts)
        for m in mounts:
            if getattr(m, "dest", None) == "/":
                raise ContainerError("mounts", m, "a mount at / replaces the root: give it as root=")
        object.__setattr__(self, "mounts", mounts)

    @property
    def interactive(self) -> bool:
        return not self.commands

    def argv(self, command: str | Sequence[str]) -> list[str]:
        return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def failed_step(err: BaseException) -> ContainerSpec | None:
    """The failed exec of a build error, from its ``errdefs.Solve`` detail (``None``: none)."""
    cause = err.__cause__ if isinstance(err, SolveError) else err
    for detail in error_details(cause) if cause is not None else []:
        if detail.type_url == TYPE_SOLVE and isinstance(detail.value, dict):
            return ContainerSpec.from_solve_error(detail.value)
    return None


Prepare = Callable[[pb.Definition], Awaitable[ContainerSpec]]


async def debug_failed_step(
    opener: Callable[[ContainerSpec], Container],
    spec: ContainerSpec,
    on_error: OnError,
    prepare: Prepare,
) -> tuple[ProcessResult, ...]:
    """Run ``on_error`` in containers on ``spec`` (``async with opener(spec)`` opens one;
    ``prepare`` solves the mounts of an exec definition, for ``root`` and ``mounts``)."""
    spec = await _with_extra_mounts(spec, on_error, prepare)
    results: list[ProcessResult] = []
    if on_error.interactive:
        async with opener(spec) as ctr:
            results.append(
                await ctr.run(
                    list(on_error.shell),
                    env=on_error.env,
                    cwd=on_error.cwd,
                    user=on_error.user,
                    terminal=True,
                    check=False,
                )
            )
        return tuple(results)
    for command in on_error.commands:
        async with opener(spec) as ctr:
            results.append(
                await ctr.run(
                    on_error.argv(command),
                    env=on_error.env,
                    cwd=on_error.cwd,
                    user=on_error.user,
                    check=False,
                )
            )
    return tuple(results)


async def _with_extra_mounts(spec: ContainerSpec, on_error: OnError, prepare: Prepare) -> ContainerSpec:
    """``spec`` with ``on_error``'s root and mounts: they are made the way any container's
    are, as the mounts of an exec the LLB builder makes (so every mount kind and check
    of ``State.run`` applies), then solved and taken over."""
    if on_error.root is None and not on_error.mounts:
        return spec
    probe = (on_error.root or llb.scratch()).run(["/bin/true"], mounts=on_error.mounts)
    extra = await prepare((await llb.marshal_async(probe)).to_pb())
    return spec.with_mounts_of(extra, root=on_error.root is not None)
