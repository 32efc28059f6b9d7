"""The immutable :class:`State`: a filesystem (an op output, or scratch) plus build-time settings.

A State is a value: every method returns a new State and never changes the one
it is called on, so States can be shared freely between coroutines and reused
as bases for many branches.  Settings that do not produce ops (working dir,
platform, and the exec settings env, user, args… of :mod:`.meta`) live on the
State itself, not on the ops.

This module builds on the op modules: ``run`` on :mod:`.exec`, ``file`` and its
shorthands on :mod:`.fileop`.  These take States as arguments (copy and mount
sources) without importing this module: they read them as
:class:`~.vertex.BaseState`, the base class holding ``output``, ``working_dir``
and ``platform``.  :class:`ExecState`, the result of ``run``, is a State, so it
is defined here too.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Self

from . import _paths
from .exec import CDIDevice, ExecOp, MountSpec, ProxyEnv, build_exec
from .fileop import FileAction, FileOp, Owner, copy, mkdir, mkfile, rm, symlink
from .image_config import ImageConfig
from .meta import NO_EXEC_META, ExecMeta, ExecSettings, NetworkMode, SecurityMode, Ulimit
from .platform import Platform
from .vertex import BaseState, Constraints, Output

__all__ = ["ExecState", "State", "scratch"]


@dataclass(frozen=True, slots=True)
class State(BaseState, ExecSettings):
    """A node of the build graph as seen by the user: ``output`` (``None`` = scratch) + settings.

    ``working_dir`` resolves relative paths of file ops (Go's ``Dir``, default
    ``/``); ``platform`` is the platform the state was created for (set by
    ``image(platform=…)`` or :meth:`with_platform`; ``None`` = the marshal default);
    ``exec_meta`` holds the settings :meth:`run` uses (``with_env``, ``with_user``…);
    ``image_config`` the OCI image config to export with this filesystem
    (:meth:`with_image_config`, helpers in :mod:`.config_ops`; ``llb.image`` starts
    with one that is only a pending base, merged in when the State is exported).
    Two States are equal when they point at the same output with the same settings.
    """

    # output, working_dir and platform are the fields of BaseState, in that order.
    exec_meta: ExecMeta = NO_EXEC_META
    image_config: ImageConfig | None = None

    @property
    def is_scratch(self) -> bool:
        """True for the empty filesystem (no op behind it)."""
        return self.output is None

    def with_dir(self, path: str) -> State:
        """A State whose working dir is ``path`` (relative paths are joined onto the current dir)."""
        return replace(self, working_dir=_paths.resolve_dir(self.working_dir, path))

    def with_platform(self, platform: Platform | str) -> State:
        """A State targeting ``platform`` (a :class:`Platform` or a ``"linux/arm64"`` specifier)."""
        return replace(self, platform=Platform.parse(platform) if isinstance(platform, str) else platform)

    def with_output(self, output: Output | None) -> State:
        """A State with the same settings whose filesystem is ``output`` (op builders use this)."""
        # Hot path of every op builder; dataclasses.replace() is ~5x slower.  Keep this call in sync
        # with the field list (a unit test checks that every field survives).
        return State(output, self.working_dir, self.platform, self.exec_meta, self.image_config)

    def with_image_config(self, config: ImageConfig | None) -> State:
        """A State carrying ``config`` as its image config (``None`` drops it); nothing else changes.

        Derived States (file ops, ``run`` roots, merges, diffs) keep it; the
        helpers in :mod:`llblib_async.llb.config_ops` change it and record
        history.  To also take over an image's env, dir and user, use
        ``config_ops.image_defaults(config)``.  A config set here replaces the one
        ``llb.image`` starts with, and so its pending base
        (:attr:`ImageConfig.base <llblib_async.llb.ImageConfig.base>`): the exported
        image then has exactly ``config``, unless ``config`` has a base itself.
        """
        return replace(self, image_config=config)

    def apply(self, *options: Callable[[State], State]) -> State:
        """Apply state options in order: ``st.apply(f, g)`` is ``g(f(st))`` (Go's ``State.With``).

        Options are plain functions ``State -> State``, such as the helpers of
        :mod:`llblib_async.llb.config_ops`.
        """
        state: State = self
        for option in options:
            state = option(state)
        return state

    def _with_exec_meta(self, meta: ExecMeta) -> Self:
        return replace(self, exec_meta=meta)

    # --- exec --------------------------------------------------------------------------------------

    def run(
        self,
        args: str | Sequence[str] | None = None,
        *,
        shell: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        hostname: str | None = None,
        network: NetworkMode | None = None,
        security: SecurityMode | None = None,
        extra_hosts: Mapping[str, str] | None = None,
        ulimits: Iterable[Ulimit | tuple[str, int, int]] = (),
        cgroup_parent: str | None = None,
        valid_exit_codes: Iterable[int] | None = None,
        mounts: Iterable[MountSpec] = (),
        secret_env: Mapping[str, str] | None = None,
        proxy_env: ProxyEnv | None = None,
        readonly_rootfs: bool = False,
        cdi_devices: Iterable[CDIDevice | str] = (),
        platform: Platform | str | None = None,
        name: str | None = None,
        description: Mapping[str, str] | None = None,
        ignore_cache: bool = False,
        fresh: bool = False,
        constraints: Constraints | None = None,
    ) -> ExecState:
        """Run a command in a container whose root filesystem is this State (Go's ``State.Run``).

        ``args`` is the command: a list is used as is, a str is split like Go's
        ``llb.Shlex`` (no shell runs it; quotes group words) or, with
        ``shell=True``, run as ``/bin/sh -c <args>``; ``None`` uses
        :meth:`with_args`.  The other options override this State's settings for
        this exec only: ``env`` is added, ``cwd`` resolves against the working
        dir, ``extra_hosts`` and ``ulimits`` are appended.  ``mounts`` are made by
        ``llb.bind``/``cache_mount``/``tmpfs``/``secret_mount``/``ssh_mount``;
        ``secret_env`` maps env var names to secret ids.  ``valid_exit_codes``
        lists the exit codes that count as success (default: only 0).
        ``readonly_rootfs`` mounts this State read-only (the root output is then
        this State).  ``name`` is the progress name; ``constraints`` adds other
        per-op :class:`~llblib_async.llb.Constraints`.

        Two ways to run a command that is already in the daemon's cache again
        (e.g. ``apt-get update``, a test run, anything reading the network):

        * ``fresh=True`` (Go llblib's ``llblib.IgnoreCache`` run option) sets the
          env var ``LLBLIB_IGNORE_CACHE`` (:data:`~llblib_async.llb.FRESH_RUN_ENV`)
          to a new random id, drawn by this call.  The op is new, so no earlier
          cache matches, but it is an ordinary op: each time the program builds the
          graph again (calls ``run`` again) the command runs again, while the
          returned State, marshaled or solved any number of times (several requests,
          one session or several), is one op that runs once and is cached.  The
          command sees the variable, and the graph's digests (``llb.digest``,
          ``llb.to_yaml``) change with each build of the graph.
        * ``ignore_cache=True`` (BuildKit's ``llb.IgnoreCache``) keeps the digest
          but tells the daemon never to reuse a cached result of the op: every
          request that needs it runs it again, even in one session.

        Deviations from Go llblib: ``fresh`` is a keyword, not the option object
        ``llblib.IgnoreCache`` (named so it is not mistaken for ``ignore_cache``,
        which is Go's ``llb.IgnoreCache``); Go's ``llblib.Run`` helper applies the
        run options twice and so draws two ids,
        :func:`~llblib_async.llb.config_ops.run` applies them once.

        Returns an :class:`~llblib_async.llb.ExecState`: the root filesystem
        after the command, keeping this State's settings; its ``get_mount(dest)``
        gives the other writable mounts.
        """
        op, root = build_exec(
            self,
            self.exec_meta,
            args,
            shell=shell,
            env=env,
            cwd=cwd,
            user=user,
            hostname=hostname,
            network=network,
            security=security,
            extra_hosts=extra_hosts,
            ulimits=ulimits,
            cgroup_parent=cgroup_parent,
            valid_exit_codes=valid_exit_codes,
            mounts=mounts,
            secret_env=secret_env,
            proxy_env=proxy_env,
            readonly_rootfs=readonly_rootfs,
            cdi_devices=cdi_devices,
            platform=platform,
            name=name,
            description=description,
            ignore_cache=ignore_cache,
            fresh=fresh,
            constraints=constraints,
        )
        # Like Go, the result keeps the settings of the State run() was called on, not the run
        # options, except that an output of the op carries the run option's platform (Go's root
        # output does; a read-only root is this State's output).
        values = {f: getattr(self, f) for f in _STATE_FIELDS}
        values["output"] = root
        if op.run_platform is not None and root is not None and root.vertex is op:
            values["platform"] = op.run_platform
        return ExecState(**values, exec_op=op)

    # --- file operations ----------------------------------------------------------------------

    def file(
        self,
        action: FileAction,
        *,
        name: str | None = None,
        description: Mapping[str, str] | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """Apply a chain of file actions to this State as one file op (Go's ``State.File``).

        Relative paths in the actions resolve against this State's working dir.
        ``name`` is the progress name (``llb.customname``); ``constraints`` adds
        other per-op :class:`~llblib_async.llb.Constraints` (the shorthands win).
        """
        op_constraints = Constraints.of(name=name, description=description, ignore_cache=ignore_cache)
        if constraints is not None:
            op_constraints = constraints.merge(op_constraints)
        op = FileOp.create(
            base=self.output, base_dir=self.working_dir, action=action, constraints=op_constraints
        )
        return self.with_output(Output(op, 0))

    def mkdir(
        self,
        path: str,
        mode: int = 0o755,
        *,
        parents: bool = False,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
        name: str | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """``self.file(mkdir(...))``: create a directory."""
        action = mkdir(path, mode, parents=parents, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache, constraints=constraints)

    def mkfile(
        self,
        path: str,
        data: bytes | str,
        mode: int = 0o644,
        *,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
        name: str | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """``self.file(mkfile(...))``: create a file holding ``data`` (str is UTF-8 encoded)."""
        action = mkfile(path, data, mode, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache, constraints=constraints)

    def rm(
        self,
        path: str,
        *,
        allow_not_found: bool = False,
        allow_wildcard: bool = False,
        name: str | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """``self.file(rm(...))``: remove a file or directory."""
        action = rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)
        return self.file(action, name=name, ignore_cache=ignore_cache, constraints=constraints)

    def symlink(
        self,
        target: str,
        link: str,
        *,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
        name: str | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """``self.file(symlink(...))``: create ``link`` pointing at ``target``."""
        action = symlink(target, link, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache, constraints=constraints)

    def copy(
        self,
        src_state: State,
        src_path: str,
        dest_path: str,
        *,
        follow_symlinks: bool = False,
        contents_only: bool = False,
        attempt_unpack: bool = False,
        create_dest_path: bool = False,
        allow_wildcard: bool = False,
        allow_empty_wildcard: bool = False,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        owner: Owner | None = None,
        mode: int | str | None = None,
        timestamp: int | datetime.datetime | None = None,
        always_replace_existing_dest_paths: bool = False,
        required_paths: Iterable[str] = (),
        name: str | None = None,
        ignore_cache: bool = False,
        constraints: Constraints | None = None,
    ) -> State:
        """``self.file(copy(...))``: copy ``src_path`` of ``src_state`` to ``dest_path`` of this State."""
        action = copy(
            src_state,
            src_path,
            dest_path,
            follow_symlinks=follow_symlinks,
            contents_only=contents_only,
            attempt_unpack=attempt_unpack,
            create_dest_path=create_dest_path,
            allow_wildcard=allow_wildcard,
            allow_empty_wildcard=allow_empty_wildcard,
            include=include,
            exclude=exclude,
            owner=owner,
            mode=mode,
            timestamp=timestamp,
            always_replace_existing_dest_paths=always_replace_existing_dest_paths,
            required_paths=required_paths,
        )
        return self.file(action, name=name, ignore_cache=ignore_cache, constraints=constraints)

    def __repr__(self) -> str:
        op = "scratch" if self.output is None else repr(self.output.vertex)
        if self.output is not None and self.output.index:
            op += f"[{self.output.index}]"
        extra = f", platform={self.platform}" if self.platform is not None else ""
        return f"State({op}, dir={self.working_dir!r}{extra})"


_STATE_FIELDS = tuple(f.name for f in fields(State))


@dataclass(frozen=True, slots=True, repr=False)
class ExecState(State):
    """The result of ``State.run``: a State for the root filesystem after the command (Go's ``ExecState``).

    Use it like any State (it *is* the root); :attr:`root` gives the plain
    State, :meth:`get_mount` the final contents of another mount.
    """

    exec_op: ExecOp | None = None

    @property
    def root(self) -> State:
        """The root filesystem after the command, as a plain State (Go's ``Root``)."""
        return self.with_output(self.output)

    def get_mount(self, dest: str) -> State:
        """The final contents of the mount at ``dest``, as a new State (Go's ``GetMount``).

        For a writable bind mount that is an output of the exec; for a read-only
        mount it is the mounted source, unchanged.  Like Go, the State is fresh:
        working dir ``/`` and no env.  Raises :class:`KeyError` if nothing is
        mounted at ``dest`` and :class:`ValueError` for mounts without contents
        to keep (cache, tmpfs, ``no_output``) — Go defers both to a marshal error
        or returns scratch.
        """
        op = self.exec_op
        if op is None:
            raise ValueError("this ExecState has no exec op")
        for m, output in zip(op.mounts, op.outputs, strict=True):
            if m.dest != dest:
                continue
            if output >= 0:
                return State(output=Output(op, output), platform=op.run_platform)
            if m.readonly:
                src = m.source
                return State() if src is None else State(output=src.output, platform=src.platform)
            kind = "tmpfs" if m.tmpfs else "cache" if m.cache_id else "no-output"
            raise ValueError(f"{kind} mount at {dest} can't be used as a parent")
        raise KeyError(f"no bind, cache or tmpfs mount at {dest!r} in this exec")

    def __repr__(self) -> str:
        return "Exec" + State.__repr__(self)


_SCRATCH = State()


def scratch() -> State:
    """The empty filesystem (Go's ``llb.Scratch()``)."""
    return _SCRATCH
