"""The immutable :class:`State`: a filesystem (an op output, or scratch) plus build-time settings.

A State is a value: every method returns a new State and never changes the one
it is called on, so States can be shared freely between coroutines and reused
as bases for many branches.  Settings that do not produce ops (working dir,
platform — later env, user, args…) live on the State itself, not on the ops.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from . import _paths
from .fileop import FileAction, FileOp, Owner, copy, mkdir, mkfile, rm, symlink
from .platform import Platform
from .vertex import Constraints, Output

__all__ = ["State", "scratch"]


@dataclass(frozen=True, slots=True)
class State:
    """A node of the build graph as seen by the user: ``output`` (``None`` = scratch) + settings.

    ``working_dir`` resolves relative paths of file ops (Go's ``Dir``, default
    ``/``); ``platform`` is the platform the state was created for (set by
    ``image(platform=…)`` or :meth:`with_platform`; ``None`` = the marshal default).
    Two States are equal when they point at the same output with the same settings.
    """

    output: Output | None = None
    working_dir: str = "/"
    platform: Platform | None = None

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
        return State(output, self.working_dir, self.platform)

    # --- file operations ----------------------------------------------------------------------

    def file(
        self,
        action: FileAction,
        *,
        name: str | None = None,
        description: Mapping[str, str] | None = None,
        ignore_cache: bool = False,
    ) -> State:
        """Apply a chain of file actions to this State as one file op (Go's ``State.File``).

        Relative paths in the actions resolve against this State's working dir.
        ``name`` is the progress name (``llb.customname``).
        """
        constraints = Constraints.of(name=name, description=description, ignore_cache=ignore_cache)
        op = FileOp.create(
            base=self.output, base_dir=self.working_dir, action=action, constraints=constraints
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
    ) -> State:
        """``self.file(mkdir(...))``: create a directory."""
        action = mkdir(path, mode, parents=parents, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache)

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
    ) -> State:
        """``self.file(mkfile(...))``: create a file holding ``data`` (str is UTF-8 encoded)."""
        action = mkfile(path, data, mode, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache)

    def rm(
        self,
        path: str,
        *,
        allow_not_found: bool = False,
        allow_wildcard: bool = False,
        name: str | None = None,
        ignore_cache: bool = False,
    ) -> State:
        """``self.file(rm(...))``: remove a file or directory."""
        action = rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)
        return self.file(action, name=name, ignore_cache=ignore_cache)

    def symlink(
        self,
        target: str,
        link: str,
        *,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
        name: str | None = None,
        ignore_cache: bool = False,
    ) -> State:
        """``self.file(symlink(...))``: create ``link`` pointing at ``target``."""
        action = symlink(target, link, owner=owner, timestamp=timestamp)
        return self.file(action, name=name, ignore_cache=ignore_cache)

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
        return self.file(action, name=name, ignore_cache=ignore_cache)

    def __repr__(self) -> str:
        op = "scratch" if self.output is None else repr(self.output.vertex)
        if self.output is not None and self.output.index:
            op += f"[{self.output.index}]"
        extra = f", platform={self.platform}" if self.platform is not None else ""
        return f"State({op}, dir={self.working_dir!r}{extra})"


_SCRATCH = State()


def scratch() -> State:
    """The empty filesystem (Go's ``llb.Scratch()``)."""
    return _SCRATCH
