"""File operations: chains of mkdir/mkfile/rm/symlink/copy actions marshaled as one ``FileOp``.

Mirrors Go's ``llb.Mkdir(...).Mkfile(...).Copy(...)`` chains: each module
function starts a :class:`FileAction`, each method appends one, and
``State.file(action)`` turns the whole chain into a single op in which action
*k* works on the result of action *k-1*.  Go's defaults that differ from proto
zero are kept: ``timestamp = -1`` ("don't touch"; 0 would mean the epoch) and
copy ``mode = -1`` ("keep"; 0 would mean ``chmod 000``).

:mod:`.state` builds on this module, so a copy source is checked and read (its
output and working dir) as a :class:`~.vertex.BaseState`, which every State is.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from .._wire.protobuf import (
    WIRE_VARINT,
    bool_field,
    bytes_field,
    int_field,
    key,
    len_field,
    repeated_str,
    str_field,
    varint,
)
from . import _paths
from ._encode import OP_FILE, encode_input, encode_op
from .vertex import BaseState, Constraints, MarshalContext, OpMetadata, Output, Vertex, follow_input

__all__ = ["FileAction", "FileOp", "Owner", "copy", "mkdir", "mkfile", "rm", "symlink"]

Owner: TypeAlias = "str | int | tuple[str | int, str | int]"
"""A file owner: ``"user[:group]"`` (names or ids, like Go's ``WithUser``), a uid, or ``(user, group)``."""

_CAP_FILE_BASE = "file.base"
_INT32 = re.compile(r"[+-]?[0-9]+", re.ASCII)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# pb.FileAction oneof field numbers.
_ACTION_COPY = 4
_ACTION_MKFILE = 5
_ACTION_MKDIR = 6
_ACTION_RM = 7
_ACTION_SYMLINK = 8


# --- owners ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _User:
    """One side of a chown: a numeric id, or a name resolved in the base's /etc/passwd|group."""

    uid: int = 0
    name: str = ""

    def encode(self, base: int) -> bytes:
        # UserOpt is a oneof: byID is written even when 0 (root).
        if self.name:
            return len_field(1, str_field(1, self.name) + int_field(2, base))
        return key(2, WIRE_VARINT) + varint(self.uid)


@dataclass(frozen=True, slots=True)
class _Chown:
    user: _User | None
    group: _User | None

    def encode(self, base: int) -> bytes:
        out = b""
        if self.user is not None:
            out += len_field(1, self.user.encode(base))
        if self.group is not None:
            out += len_field(2, self.group.encode(base))
        return out


def _parse_user(value: str | int, *, what: str) -> _User:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a name or a numeric id, not a bool")
    if isinstance(value, int):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"{what} id {value} is out of range (0..4294967295)")
        return _User(uid=value)
    # Go's parseUID: "root" is 0, anything ParseInt(…, 10, 32) accepts is an id, the rest a name.
    if value == "root":
        return _User(uid=0)
    if _INT32.fullmatch(value) and -(1 << 31) <= int(value) < 1 << 31:
        return _User(uid=int(value) & 0xFFFFFFFF)
    if not value:
        raise ValueError(f"{what} must not be empty")
    return _User(name=value)


def _parse_owner(owner: Owner | None) -> _Chown | None:
    if owner is None:
        return None
    if isinstance(owner, tuple):
        if len(owner) != 2:
            raise ValueError(f"owner tuple must be (user, group), got {owner!r}")
        return _Chown(_parse_user(owner[0], what="user"), _parse_user(owner[1], what="group"))
    if isinstance(owner, str):
        # Go's WithUser: "user[:group]"; an empty group part means "no group" like no colon at all.
        user, _, group = owner.partition(":")
        return _Chown(_parse_user(user, what="user"), _parse_user(group, what="group") if group else None)
    return _Chown(_parse_user(owner, what="user"), None)


def _encode_owner(field: int, owner: _Chown | None, base: int) -> bytes:
    return b"" if owner is None else len_field(field, owner.encode(base))


# --- argument checks -----------------------------------------------------------------------------


def _timestamp_ns(timestamp: int | datetime.datetime | None) -> int:
    if timestamp is None:
        return -1
    if isinstance(timestamp, bool):
        raise TypeError("timestamp must be nanoseconds since the epoch or an aware datetime")
    if isinstance(timestamp, datetime.datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp datetime must be timezone-aware (a naive one is ambiguous)")
        delta = timestamp - _EPOCH
        ns = ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    else:
        ns = int(timestamp)
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise ValueError(f"timestamp {timestamp!r} does not fit in int64 nanoseconds")
    return ns


def _perm_mode(mode: int, *, what: str) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"{what} mode must be an int such as 0o755, got {mode!r}")
    # BuildKit applies only permission bits here (Go masks with 0777); refuse more rather than drop it.
    if not 0 <= mode <= 0o777:
        raise ValueError(f"bad {what} mode {mode:#o}: only permission bits 0o000..0o777 are supported")
    return mode


def _check_path(path: str, *, what: str) -> str:
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a str, got {type(path).__name__}")
    if not path:
        raise ValueError(f"{what} must not be empty")
    return path


# --- the actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mkdir:
    path: str
    mode: int
    parents: bool
    owner: _Chown | None
    timestamp: int

    def encode(self, parent: str, base: int) -> bytes:
        return len_field(
            _ACTION_MKDIR,
            str_field(1, _paths.normalize_path(parent, self.path, keep_slash=False))
            + int_field(2, self.mode)
            + bool_field(3, self.parents)
            + _encode_owner(4, self.owner, base)
            + int_field(5, self.timestamp),
        )

    def describe(self) -> str:
        return f"mkdir {self.path}"


@dataclass(frozen=True, slots=True)
class _Mkfile:
    path: str
    mode: int
    data: bytes
    owner: _Chown | None
    timestamp: int

    def encode(self, parent: str, base: int) -> bytes:
        return len_field(
            _ACTION_MKFILE,
            str_field(1, _paths.normalize_path(parent, self.path, keep_slash=False))
            + int_field(2, self.mode)
            + bytes_field(3, self.data)
            + _encode_owner(4, self.owner, base)
            + int_field(5, self.timestamp),
        )

    def describe(self) -> str:
        return f"mkfile {self.path}"


@dataclass(frozen=True, slots=True)
class _Rm:
    path: str
    allow_not_found: bool
    allow_wildcard: bool

    def encode(self, parent: str, base: int) -> bytes:
        return len_field(
            _ACTION_RM,
            str_field(1, _paths.normalize_path(parent, self.path, keep_slash=False))
            + bool_field(2, self.allow_not_found)
            + bool_field(3, self.allow_wildcard),
        )

    def describe(self) -> str:
        return f"rm {self.path}"


@dataclass(frozen=True, slots=True)
class _Symlink:
    target: str
    link: str
    owner: _Chown | None
    timestamp: int

    def encode(self, parent: str, base: int) -> bytes:
        # Go sends both paths verbatim (no working-dir resolution) for symlinks.
        return len_field(
            _ACTION_SYMLINK,
            str_field(1, self.target)
            + str_field(2, self.link)
            + _encode_owner(3, self.owner, base)
            + int_field(4, self.timestamp),
        )

    def describe(self) -> str:
        return f"symlink {self.link} -> {self.target}"


@dataclass(frozen=True, slots=True)
class _Copy:
    src: Output | None
    src_dir: str
    src_path: str
    dest_path: str
    follow_symlinks: bool
    contents_only: bool
    attempt_unpack: bool
    create_dest_path: bool
    allow_wildcard: bool
    allow_empty_wildcard: bool
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    owner: _Chown | None
    mode: int | str | None
    timestamp: int
    always_replace_existing_dest_paths: bool
    required_paths: tuple[str, ...]

    def encode(self, parent: str, base: int) -> bytes:
        if self.mode is None:
            mode, mode_str = -1, ""
        elif isinstance(self.mode, str):
            mode, mode_str = 0, self.mode
        else:
            mode, mode_str = self.mode, ""
        return len_field(
            _ACTION_COPY,
            str_field(1, _paths.copy_source_path(self.src_dir, self.src_path))
            + str_field(2, _paths.normalize_path(parent, self.dest_path, keep_slash=True))
            + _encode_owner(3, self.owner, base)
            + int_field(4, mode)
            + bool_field(5, self.follow_symlinks)
            + bool_field(6, self.contents_only)
            + bool_field(7, self.attempt_unpack)
            + bool_field(8, self.create_dest_path)
            + bool_field(9, self.allow_wildcard)
            + bool_field(10, self.allow_empty_wildcard)
            + int_field(11, self.timestamp)
            + repeated_str(12, self.include)
            + repeated_str(13, self.exclude)
            + bool_field(14, self.always_replace_existing_dest_paths)
            + str_field(15, mode_str)
            + repeated_str(16, self.required_paths),
        )

    def describe(self) -> str:
        return f"copy {self.src_path} {self.dest_path}"


_Spec: TypeAlias = "_Mkdir | _Mkfile | _Rm | _Symlink | _Copy"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class FileAction:
    """An immutable chain of file actions; each method returns a longer chain.

    Build one with :func:`mkdir`, :func:`mkfile`, :func:`rm`, :func:`symlink` or
    :func:`copy` and apply it with ``State.file(action)``.  A chain can be applied
    to several States and extended in several directions; nothing is shared
    mutably.
    """

    _spec: _Spec
    _prev: FileAction | None = None

    def mkdir(
        self,
        path: str,
        mode: int = 0o755,
        *,
        parents: bool = False,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
    ) -> FileAction:
        """Append a :func:`mkdir` action."""
        return FileAction(mkdir(path, mode, parents=parents, owner=owner, timestamp=timestamp)._spec, self)

    def mkfile(
        self,
        path: str,
        data: bytes | str,
        mode: int = 0o644,
        *,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
    ) -> FileAction:
        """Append a :func:`mkfile` action."""
        return FileAction(mkfile(path, data, mode, owner=owner, timestamp=timestamp)._spec, self)

    def rm(self, path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False) -> FileAction:
        """Append an :func:`rm` action."""
        return FileAction(
            rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)._spec, self
        )

    def symlink(
        self,
        target: str,
        link: str,
        *,
        owner: Owner | None = None,
        timestamp: int | datetime.datetime | None = None,
    ) -> FileAction:
        """Append a :func:`symlink` action."""
        return FileAction(symlink(target, link, owner=owner, timestamp=timestamp)._spec, self)

    def copy(
        self,
        src_state: BaseState,
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
    ) -> FileAction:
        """Append a :func:`copy` action."""
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
        return FileAction(action._spec, self)

    def _chain(self) -> tuple[_Spec, ...]:
        # Iterative, so chains of any length work without hitting the recursion limit.
        specs: list[_Spec] = []
        node: FileAction | None = self
        while node is not None:
            specs.append(node._spec)
            node = node._prev
        specs.reverse()
        return tuple(specs)

    def __repr__(self) -> str:
        chain = self._chain()
        shown = "; ".join(s.describe() for s in chain[:3])
        if len(chain) > 3:
            shown += f"; … ({len(chain)} actions)"
        return f"FileAction({shown})"


def mkdir(
    path: str,
    mode: int = 0o755,
    *,
    parents: bool = False,
    owner: Owner | None = None,
    timestamp: int | datetime.datetime | None = None,
) -> FileAction:
    """Create directory ``path`` with permission bits ``mode``.

    ``parents`` creates missing parents (``mkdir -p``); ``owner`` is
    ``"user[:group]"``, a uid or ``(user, group)``; ``timestamp`` (ns since the
    epoch, or an aware datetime) sets the mtime, default: the time of the build.
    """
    return FileAction(
        _Mkdir(
            path=_check_path(path, what="mkdir path"),
            mode=_perm_mode(mode, what="mkdir"),
            parents=parents,
            owner=_parse_owner(owner),
            timestamp=_timestamp_ns(timestamp),
        )
    )


def mkfile(
    path: str,
    data: bytes | str,
    mode: int = 0o644,
    *,
    owner: Owner | None = None,
    timestamp: int | datetime.datetime | None = None,
) -> FileAction:
    """Create file ``path`` holding ``data`` (a str is UTF-8 encoded); its parent must exist."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = bytes(data)
    return FileAction(
        _Mkfile(
            path=_check_path(path, what="mkfile path"),
            mode=_perm_mode(mode, what="mkfile"),
            data=data,
            owner=_parse_owner(owner),
            timestamp=_timestamp_ns(timestamp),
        )
    )


def rm(path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False) -> FileAction:
    """Remove ``path`` (recursively); ``allow_wildcard`` lets it be a glob."""
    return FileAction(
        _Rm(
            path=_check_path(path, what="rm path"),
            allow_not_found=allow_not_found,
            allow_wildcard=allow_wildcard,
        )
    )


def symlink(
    target: str,
    link: str,
    *,
    owner: Owner | None = None,
    timestamp: int | datetime.datetime | None = None,
) -> FileAction:
    """Create symlink ``link`` pointing at ``target``.

    Like Go, both paths are sent as given (not resolved against the working dir).
    """
    return FileAction(
        _Symlink(
            target=_check_path(target, what="symlink target"),
            link=_check_path(link, what="symlink path"),
            owner=_parse_owner(owner),
            timestamp=_timestamp_ns(timestamp),
        )
    )


def copy(
    src_state: BaseState,
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
) -> FileAction:
    """Copy ``src_path`` of ``src_state`` to ``dest_path`` of the State the action is applied to.

    ``src_path`` resolves against ``src_state``'s working dir, ``dest_path`` against the
    target's; a trailing ``/`` on ``dest_path`` means "into this directory".
    ``contents_only`` copies a directory's contents rather than the directory,
    ``create_dest_path`` creates missing parents of the destination,
    ``allow_wildcard``/``allow_empty_wildcard`` enable globs in ``src_path``,
    ``include``/``exclude`` filter with patterns, ``attempt_unpack`` extracts
    archives like Dockerfile ``ADD``.  ``mode`` is an int (``0o755``), a chmod
    string (``"u+x"``, needs BuildKit ≥ 0.17) or ``None`` to keep source modes.
    """
    if not isinstance(src_state, BaseState):
        raise TypeError(f"copy source must be a State, got {type(src_state).__name__}")
    if mode is not None and not isinstance(mode, str):
        if isinstance(mode, bool) or not isinstance(mode, int):
            raise TypeError(f"copy mode must be an int, a chmod string or None, got {mode!r}")
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"bad copy mode {mode:#o}: must be within 0o0000..0o7777")
    if isinstance(mode, str) and not mode:
        raise ValueError("copy mode string must not be empty")
    return FileAction(
        _Copy(
            src=src_state.output,
            src_dir=src_state.working_dir,
            src_path=_check_path(src_path, what="copy source path"),
            dest_path=_check_path(dest_path, what="copy destination path"),
            follow_symlinks=follow_symlinks,
            contents_only=contents_only,
            attempt_unpack=attempt_unpack,
            create_dest_path=create_dest_path,
            allow_wildcard=allow_wildcard,
            allow_empty_wildcard=allow_empty_wildcard,
            include=_str_tuple(include, what="include"),
            exclude=_str_tuple(exclude, what="exclude"),
            owner=_parse_owner(owner),
            mode=mode,
            timestamp=_timestamp_ns(timestamp),
            always_replace_existing_dest_paths=always_replace_existing_dest_paths,
            required_paths=_str_tuple(required_paths, what="required_paths"),
        )
    )


def _str_tuple(values: Iterable[str], *, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        # A lone string would silently become one pattern per character.
        raise TypeError(f"{what} must be an iterable of strings, not a str")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what} entries must be str, got {type(v).__name__}")
    return out


# --- the op -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class FileOp(Vertex):
    """A ``FileOp`` vertex: a chain of actions applied to ``base`` (``None`` = scratch).

    ``base_dir`` is the working dir of the State the chain was applied to; it
    resolves relative paths.  The op has one output (index 0), the last action's
    result.
    """

    base: Output | None
    base_dir: str
    actions: tuple[_Spec, ...]
    constraints: Constraints
    inputs: tuple[Output, ...]

    @classmethod
    def create(
        cls, *, base: Output | None, base_dir: str, action: FileAction, constraints: Constraints
    ) -> FileOp:
        """Bind ``action``'s chain to a base output and working dir."""
        if not isinstance(action, FileAction):
            raise TypeError(f"State.file() needs a FileAction, got {type(action).__name__}")
        actions = action._chain()
        # Go's FileAction.allOutputs: the base first, then copy sources from the LAST action back
        # to the first (deduplicated).  This order decides the order of ops in the Definition.
        inputs: tuple[Output, ...] = () if base is None else (base,)
        sources = [a.src for a in reversed(actions) if isinstance(a, _Copy) and a.src is not None]
        if sources:
            ordered = dict.fromkeys(inputs + tuple(sources))
            inputs = tuple(ordered)
        return cls(base=base, base_dir=base_dir, actions=actions, constraints=constraints, inputs=inputs)

    def _inputs(self) -> tuple[Output, ...]:
        return self.inputs

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        # op.inputs are numbered in the order Go's marshalState.add meets them: per action
        # (first to last) its base, then its copy source; equal (digest, index) pairs share an index.
        index: dict[tuple[str, int], int] = {}
        input_msgs: list[bytes] = []

        def add(out: Output) -> int:
            if out.vertex._indirect:  # an llb.lazy State: refer to the op it resolved to
                out = follow_input(out, ctx)
            digest = ctx.marshaled(out.vertex).digest
            k = (digest, out.index)
            i = index.get(k)
            if i is None:
                i = index[k] = len(input_msgs)
                input_msgs.append(encode_input(digest, out.index))
            return i

        base = -1
        secondaries: list[int] = []
        for spec in self.actions:
            if self.base is not None:
                base = add(self.base)
            secondaries.append(add(spec.src) if isinstance(spec, _Copy) and spec.src is not None else -1)

        # Action k > 0 reads the result of action k-1, numbered after the real inputs.
        n_inputs = len(input_msgs)
        last = len(self.actions) - 1
        # FileOp.actions is field 2 (field 1 is reserved in ops.proto).
        actions = b"".join(
            len_field(
                2,
                int_field(1, base if k == 0 else n_inputs + k - 1)
                + int_field(2, secondaries[k])
                + int_field(3, 0 if k == last else -1)
                + spec.encode(self.base_dir, base),
            )
            for k, spec in enumerate(self.actions)
        )
        data = encode_op(
            inputs=input_msgs,
            platform=None,
            worker_filters=self.constraints.require,
            op_field=OP_FILE,
            op_payload=actions,
        )
        # Go's FileOp only ever records file.base: its per-action addCaps loop runs over an empty
        # list (client/llb fileop.go), so e.g. file.symlink.create is never sent.  Matching that
        # keeps our Definitions identical to Go's.
        return data, self.constraints.metadata((_CAP_FILE_BASE,))

    def __repr__(self) -> str:
        shown = "; ".join(s.describe() for s in self.actions[:3])
        if len(self.actions) > 3:
            shown += f"; … ({len(self.actions)} actions)"
        return f"<FileOp {shown}>"
