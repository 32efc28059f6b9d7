"""``llb.persistent``: runs that each see what the previous runs wrote (Go llblib's ``Persistent``).

A workspace is a root filesystem plus bind mounts that are *propagated*: every
``run`` mounts them, and the next run mounts what the previous one left in
them.  Without it, chaining runs means threading ``exec.root`` and every
``exec.get_mount(dest)`` by hand::

    ws = llb.persistent(base, mounts=[llb.bind("/work", llb.scratch())])
    ws = ws.run("make deps", shell=True, mounts=[llb.cache_mount("/root/.cache", id="deps")])
    ws = ws.run("make", shell=True, cwd="/work")
    binaries = ws.mount("/work")

Each run is ``co.run(root, ...)`` (so, as with llblib's ``Persistent``, the root
gets a ``RUN`` history record), with the propagated mounts (their current
contents) plus the run's own ``mounts=``.  The run's other keywords (``env``,
``cwd``, per-run cache/tmpfs/secret mounts...) apply to that run only, as in Go.

Deviations from Go's ``MountPropagator``:

* it is an immutable value: ``run``, ``with_root`` and ``with_mount`` return a
  new :class:`Persistent` and leave the old one as it was (Go mutates the
  propagator in place), so a workspace can be branched without ``Copy()``;
* only bind mounts are propagated: a cache, tmpfs or ``no_output`` mount, a
  secret or an SSH socket has no contents to carry to the next run, and raises
  :class:`MountPropagationError` naming it when the workspace is made (Go accepts
  them and fails at the second run's marshal with "tmpfs mount … can't be used as
  a parent" / "invalid mount");
* :meth:`Persistent.mount` gives a propagated mount's configured source before the
  first run (Go's ``GetMount`` reports it as not found) and raises
  :class:`KeyError` for an unknown mount point (Go returns scratch and ``false``);
* :meth:`Persistent.with_mount` on a new mount point adds a writable bind that
  later runs mount (Go's ``ApplyMount`` stores it but never mounts it);
* the propagated mounts never touch the run's other settings (Go's rewritten
  option replaces the whole constraints block of the exec it is applied to).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from ..errors import BuildKitError
from . import config_ops
from .exec import CDIDevice, Mount, MountSpec, ProxyEnv, SecretMount, SSHMount, bind, mount_list
from .meta import NetworkMode, SecurityMode, Ulimit
from .platform import Platform
from .state import ExecState, State, scratch
from .vertex import Constraints

__all__ = ["MountPropagationError", "Persistent", "RunOptions", "persistent"]


class MountPropagationError(BuildKitError, ValueError):
    """A mount given to ``llb.persistent`` cannot be carried from one run to the next.

    ``dest`` is its mount point (a secret's or SSH socket's id when it has none),
    ``reason`` says why.  Such mounts belong to each ``run(mounts=...)`` instead.
    """

    def __init__(self, dest: str, reason: str) -> None:
        super().__init__(f"mount at {dest!r} cannot be propagated: {reason}")
        self.dest = dest
        self.reason = reason


class RunOptions(TypedDict, total=False):
    """The keywords of :meth:`State.run <llblib_async.llb.State.run>` except ``mounts``, see there."""

    shell: bool
    env: Mapping[str, str] | None
    cwd: str | None
    user: str | None
    hostname: str | None
    network: NetworkMode | None
    security: SecurityMode | None
    extra_hosts: Mapping[str, str] | None
    ulimits: Iterable[Ulimit | tuple[str, int, int]]
    cgroup_parent: str | None
    valid_exit_codes: Iterable[int] | None
    secret_env: Mapping[str, str] | None
    proxy_env: ProxyEnv | None
    readonly_rootfs: bool
    cdi_devices: Iterable[CDIDevice | str]
    platform: Platform | str | None
    name: str | None
    description: Mapping[str, str] | None
    ignore_cache: bool
    fresh: bool
    constraints: Constraints | None


def _as_state(source: object) -> State:
    if source is None:
        return scratch()
    if isinstance(source, State):
        return source
    raise TypeError(f"mount source must be a State, got {type(source).__name__}")


def _propagated(mount: object, seen: set[str]) -> Mount:
    """``mount`` checked as a propagated mount (a bind with contents to carry); ``seen`` collects dests."""
    if isinstance(mount, SecretMount | SSHMount):
        kind = "a secret" if isinstance(mount, SecretMount) else "an SSH socket"
        raise MountPropagationError(
            mount.dest or mount.id, f"{kind} has no contents to carry; give it to each run(mounts=...)"
        )
    if not isinstance(mount, Mount):
        raise TypeError(f"propagated mounts must be llb.bind(...) mounts, got {mount!r}")
    dest = mount.dest
    if mount.cache_id or mount.tmpfs:
        kind = "a cache mount" if mount.cache_id else "a tmpfs"
        raise MountPropagationError(dest, f"{kind} has no output; give it to each run(mounts=...)")
    if mount.no_output and not mount.readonly:
        raise MountPropagationError(
            dest, "a no_output bind drops its changes; give it to each run(mounts=...)"
        )
    if dest == "/":
        raise MountPropagationError(dest, "the root is always propagated; pass it as persistent(root, ...)")
    if dest in seen:
        raise MountPropagationError(dest, "mounted twice")
    seen.add(dest)
    # A bare Mount(dest) is a bind of scratch; a State source keeps mount() and the next run simple.
    return dataclasses.replace(mount, source=_as_state(mount.source))


@dataclass(frozen=True, slots=True)
class Persistent:
    """A root filesystem and bind mounts carried through a chain of runs (Go llblib's ``MountPropagator``).

    Make one with :func:`persistent`.  ``root`` is the current root filesystem;
    ``mounts`` the propagated binds with their current contents as sources, in
    the order given (``State.run(mounts=ws.mounts)`` mounts them in a plain run:
    Go's ``AsRun``); ``last`` the :class:`~llblib_async.llb.ExecState` of the
    latest :meth:`run` (``None`` before the first), for per-run mounts and the
    exec itself.  A value: every method returns a new ``Persistent`` (Go mutates;
    see the module docstring for this and the other deviations).
    """

    root: State
    mounts: tuple[Mount, ...] = ()
    last: ExecState | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.root, State):
            raise TypeError(f"persistent root must be a State, got {type(self.root).__name__}")
        seen: set[str] = set()
        checked = tuple(_propagated(m, seen) for m in mount_list(self.mounts))
        object.__setattr__(self, "mounts", checked)  # frozen: set once, here

    def run(
        self,
        args: str | Sequence[str] | None = None,
        *,
        mounts: Iterable[MountSpec] = (),
        **options: Unpack[RunOptions],
    ) -> Persistent:
        """Run a command on the root with the propagated mounts; a new workspace holds what it wrote.

        The keywords are those of :meth:`State.run <llblib_async.llb.State.run>`,
        for this run only; ``mounts`` adds per-run mounts (cache, tmpfs,
        secrets...), which are not propagated.  The result's root is the exec's
        root (with a ``RUN`` history record, like ``co.run``), its writable
        propagated mounts are the exec's outputs for them and its read-only ones
        stay as they were; ``last`` is the exec.
        """
        per_run = mount_list(mounts)
        propagated = {m.dest for m in self.mounts}
        for m in per_run:
            if isinstance(m, Mount) and m.dest in propagated:
                raise ValueError(f"{m.dest!r} is a propagated mount already; change it with with_mount()")
        exec_state = config_ops.run(self.root, args, mounts=[*self.mounts, *per_run], **options)
        carried = tuple(
            dataclasses.replace(m, source=exec_state.get_mount(m.dest)) if m.has_output else m
            for m in self.mounts
        )
        return Persistent(exec_state.root, carried, exec_state)

    def mount(self, dest: str) -> State:
        """The current contents of the propagated mount at ``dest`` (Go's ``GetMount``).

        Before the first run that is the configured source.  This is the whole
        mounted State: a ``selector`` given to ``llb.bind`` applies when it is
        mounted, not here.  Raises :class:`KeyError` naming ``dest`` if nothing is
        propagated there.
        """
        for m in self.mounts:
            if m.dest == dest:
                return _as_state(m.source)
        known = ", ".join(repr(m.dest) for m in self.mounts) or "none"
        raise KeyError(f"no propagated mount at {dest!r} (propagated: {known})")

    def with_root(self, root: State) -> Persistent:
        """This workspace on ``root`` (Go's ``ApplyRoot``: ``ws.with_root(ws.root.apply(...))``)."""
        return Persistent(root, self.mounts, self.last)

    def with_mount(self, dest: str, source: State) -> Persistent:
        """This workspace with ``source`` as the contents of the propagated mount at ``dest``.

        An existing mount keeps its options (read-only, selector...); a new
        ``dest`` is added as a writable ``llb.bind(dest, source)`` that the next
        runs mount (Go's ``ApplyMount`` with ``ws.mount(dest).apply(...)``, or
        ``Add``).
        """
        if any(m.dest == dest for m in self.mounts):
            mounts = tuple(
                dataclasses.replace(m, source=source) if m.dest == dest else m for m in self.mounts
            )
        else:
            mounts = (*self.mounts, bind(dest, source))
        return Persistent(self.root, mounts, self.last)


def persistent(root: State, *, mounts: Iterable[Mount] = ()) -> Persistent:
    """A workspace whose runs start on ``root`` and carry the bind ``mounts`` forward (Go's ``Persistent``).

    ``mounts`` are made by :func:`~llblib_async.llb.bind`; a writable one's
    changes are seen by the next run, a read-only one is mounted as given each
    time.  Cache, tmpfs, ``no_output``, secret and SSH mounts raise
    :class:`MountPropagationError` (they have nothing to carry: give them to each
    ``run``).  See :class:`Persistent`.
    """
    return Persistent(root, tuple(mount_list(mounts)))
