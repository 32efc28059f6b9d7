"""Walk a local directory the way fsutil's sender does (synchronous, no asyncio).

:func:`walk` yields one ``fsutil.types.Stat`` per entry, in the order and with the
fields that Go's BuildKit client would send for a ``local://`` source: the layers
are those of ``client.prepareSyncedFiles`` + ``filesync`` + ``fsutil.Send``::

    WithHardlinkReset(NewFilterFS(NewFilterFS(NewFS(dir), {Map: resetUIDAndGID}),
                                  {IncludePatterns, ExcludePatterns, FollowPaths, Map}))

* Order: entries of a directory sorted byte-wise by name, depth-first, parents before
  children (Go's ``filepath.WalkDir``); the root itself is not sent.
* ``Stat``: Go ``FileMode`` bits (:mod:`.gomode`), uid/gid forced to 0, size for
  non-directories, mtime in ns, symlink target as ``linkname``, later hardlinks of an
  inode with ``linkname`` = first path sent, device numbers, xattrs except
  ``com.apple.*``; sockets are dropped.
* Filtering: fsutil's ``filterFS`` on top of :mod:`.patterns`, including its
  "parent directories of an included entry are still sent" rule and
  followpaths resolution.

Symlinks are never followed: directories are opened relative to their parent's file
descriptor with ``O_NOFOLLOW``, so swapping a directory for a symlink mid-walk can't
lead the walk (or the sender's reads) out of the root.

Deliberate differences from Go, all in error paths: an entry that vanishes during
the walk is skipped alone (Go's ``SkipDir`` on a file also skips its remaining
siblings); an unreadable root raises instead of sending an empty tree; hardlinks are
keyed by (device, inode), not inode alone; followpaths never look outside the root.
"""

from __future__ import annotations

import enum
import errno
import os
import stat as _stat
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field

from .._pb.fsutil.types import Stat
from ..errors import PatternError
from . import gomode
from .patterns import MatchInfo, Pattern, PatternMatcher, clean, filepath_match, go_base, go_dir, go_join

_XATTR_APPLE_PREFIX = "com.apple."
_PATTERN_CHARS = "*[]?^\\"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class MapResult(enum.Enum):
    """What a map function decides for an entry (fsutil's ``MapResult``)."""

    KEEP = 0
    """Keep the entry and continue."""
    EXCLUDE = 1
    """Drop the entry, continue (a directory's children are still visited)."""
    SKIP_DIR = 2
    """Drop the entry; for a directory skip its contents, for a file its remaining siblings."""


MapFunc = Callable[[str, Stat], MapResult]
"""Called with the ``/``-separated path and the (mutable) ``Stat`` of each kept entry."""


class WalkError(OSError):
    """The walk could not read part of the tree (message names the path)."""


@dataclass(frozen=True, slots=True)
class FilterOptions:
    """fsutil's ``FilterOpt``: what a FileSync request asks the sender to send."""

    include_patterns: Sequence[str] | None = None
    exclude_patterns: Sequence[str] | None = None
    follow_paths: Sequence[str] | None = None
    map: MapFunc | None = None


# --------------------------------------------------------------------------- base FS


class _Dir:
    """An open directory (fd) with its sorted entries, one level of the walk stack."""

    __slots__ = ("entries", "fd", "index", "rel")

    def __init__(self, fd: int, rel: str, entries: list[tuple[bytes, str, bool]]) -> None:
        self.fd = fd
        self.rel = rel
        self.entries = entries
        self.index = 0


def _list_dir(fd: int) -> list[tuple[bytes, str, bool]]:
    """Entries of an open directory as (sort key, name, is_dir), in Go's byte order."""
    out: list[tuple[bytes, str, bool]] = []
    with os.scandir(fd) as it:
        for e in it:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            out.append((os.fsencode(e.name), e.name, is_dir))
    out.sort(key=lambda t: t[0])
    return out


def _proc_path(dir_fd: int, name: str) -> str:
    # os.listxattr/getxattr take no dir_fd; /proc/self/fd/N resolves to the directory
    # itself (not by name), so the entry is still looked up beneath our open fd.
    return f"/proc/self/fd/{dir_fd}/{name}"


def _load_xattrs(dir_fd: int, name: str, abs_path: str) -> dict[str, bytes]:
    path = _proc_path(dir_fd, name) if sys.platform == "linux" else abs_path
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return {}
        raise WalkError(e.errno, f"failed to xattr {abs_path}: {e.strerror}") from e
    out: dict[str, bytes] = {}
    for key in keys:
        if key.startswith(_XATTR_APPLE_PREFIX):
            continue
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue  # Go skips attributes it cannot read
    return out


def _mkstat(
    dir_fd: int, name: str, rel: str, abs_path: str, inodes: dict[tuple[int, int], str] | None
) -> Stat:
    """fsutil's ``mkstat`` + ``setUnixOpt`` for one entry (lstat, never follows)."""
    st = os.lstat(name, dir_fd=dir_fd)
    mode = gomode.from_posix(st.st_mode)
    stat = Stat(path=rel, mode=mode, uid=st.st_uid, gid=st.st_gid, mod_time=st.st_mtime_ns)
    is_dir = _stat.S_ISDIR(st.st_mode)
    if not is_dir:
        # Go tests the type bits with "&" (so symlinks/sockets qualify too); their
        # rdev is 0, so only devices get non-zero numbers.
        if st.st_mode & (_stat.S_IFBLK | _stat.S_IFCHR):
            stat.devmajor = gomode.go_major(st.st_rdev)
            stat.devminor = gomode.go_minor(st.st_rdev)
        if inodes is not None:
            key = (st.st_dev, st.st_ino)
            first = inodes.get(key) if st.st_nlink > 1 else None
            if first is not None:
                stat.linkname = first
            else:
                inodes[key] = rel
        # Go sets Size after the hardlink check, so hardlinks carry the real size too.
        stat.size = st.st_size
        if _stat.S_ISLNK(st.st_mode):
            stat.linkname = os.readlink(name, dir_fd=dir_fd)
    xattrs = _load_xattrs(dir_fd, name, abs_path)
    if xattrs:
        stat.xattrs = xattrs
    # Clear the socket bit like fsutil (archive/tar can't represent sockets).
    stat.mode &= ~gomode.MODE_SOCKET
    return stat


def _is_not_exist(e: OSError) -> bool:
    return e.errno in (errno.ENOENT, errno.ENOTDIR)


# --------------------------------------------------------------------------- followpaths


def _contains_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 1
        elif ch in "*?[":
            return True
        i += 1
    return False


def _dedupe_paths(paths: Sequence[str]) -> list[str] | None:
    """fsutil's ``dedupePaths`` (expects sorted input; ``None`` = "no filter")."""
    out: list[str] = []
    last = ""
    for s in paths:
        if s == ".":
            return None
        if s.startswith(last + "/"):
            continue
        out.append(s)
        last = s
    return out


class _SymlinkResolver:
    """fsutil's ``FollowLinks``: resolve followpaths through symlinks inside the root."""

    def __init__(self, root: str) -> None:
        self._root = root
        self.resolved: set[str] = set()

    def _lstat(self, rel: str) -> os.stat_result | None:
        if rel == ".." or rel.startswith("../"):
            return None  # never look outside the root
        try:
            return os.lstat(os.path.join(self._root, rel))
        except OSError as e:
            if _is_not_exist(e):
                return None
            raise WalkError(e.errno, f"followpaths: {rel}: {e.strerror}") from e

    def _read_dir(self, rel: str) -> list[str] | None:
        if rel == ".." or rel.startswith("../"):
            return None
        try:
            with os.scandir(os.path.join(self._root, rel)) as it:
                return sorted((e.name for e in it), key=os.fsencode)
        except OSError as e:
            if _is_not_exist(e):
                return None
            raise WalkError(e.errno, f"followpaths: readdir {rel}: {e.strerror}") from e

    def _read_symlink(self, p: str, allow_wildcard: bool) -> list[str] | None:
        base = go_base(p)
        if allow_wildcard and _contains_wildcards(base):
            names = self._read_dir(go_dir(p))
            if names is None:
                return None
            out: list[str] | None = None
            for name in names:
                try:
                    ok = filepath_match(base, name)
                except ValueError:
                    ok = False
                if ok:
                    res = self._read_symlink(go_join(go_dir(p), name), False)
                    if res:
                        out = (out or []) + res
            return out
        p = clean(p)
        if p in ("/", "."):
            return None
        st = self._lstat(p)
        if st is None or not _stat.S_ISLNK(st.st_mode):
            return None
        link = clean(os.readlink(os.path.join(self._root, p)))
        if link.startswith("/"):
            return [link]
        return [go_join("/", go_join(go_dir(p), link))]

    def append(self, p: str) -> None:
        p = go_join(".", p)
        current = "."
        while True:
            first, sep, rest = p.partition("/")
            current = go_join(current, first)
            targets = self._read_symlink(current, True)
            p = rest if sep else ""
            if (p == "" or targets is not None) and current in self.resolved:
                return
            if targets is not None:
                self.resolved.add(current)
                for target in targets:
                    self.append(go_join(target, p))
                return
            if p == "":
                self.resolved.add(current)
                return


def follow_links(root: str, paths: Sequence[str]) -> list[str] | None:
    """Resolve ``followpaths`` to include patterns (``None``: everything is included)."""
    r = _SymlinkResolver(root)
    for p in paths:
        r.append(p)
    return _dedupe_paths(sorted(r.resolved, key=os.fsencode))


# --------------------------------------------------------------------------- filterFS


def _go_list(items: Sequence[str]) -> str:
    """Go's ``%s`` of a ``[]string`` (error messages match the Go sender's)."""
    return "[" + " ".join(items) + "]"


def _pattern_without_trailing_glob(p: Pattern) -> str:
    s = str(p)
    s = s.removesuffix("/**")
    return s.removesuffix("/*")


@dataclass(slots=True)
class _VisitedDir:
    stat: Stat
    path_with_sep: str
    include_info: MatchInfo = field(default_factory=MatchInfo)
    exclude_info: MatchInfo = field(default_factory=MatchInfo)
    called_fn: bool = False
    skip_fn: bool = False


class _Skip(enum.Enum):
    CONTINUE = 0
    SKIP_DIR = 1


class _FilterFS:
    """The per-entry logic of fsutil's ``filterFS.Walk`` (include/exclude/map)."""

    def __init__(self, root: str, opts: FilterOptions) -> None:
        include_patterns = list(opts.include_patterns) if opts.include_patterns is not None else None
        if opts.follow_paths is not None:
            targets = follow_links(root, opts.follow_paths)
            if targets is not None:
                include_patterns = _dedupe_paths([*(include_patterns or []), *targets])
        self.include: PatternMatcher | None = None
        self.exclude: PatternMatcher | None = None
        self.only_prefix_includes = True
        self.only_prefix_exclude_exceptions = True
        if include_patterns:
            try:
                self.include = PatternMatcher(include_patterns)
            except ValueError as e:
                raise PatternError(
                    f"invalid includepatterns: {_go_list(include_patterns)}: {e}", include_patterns
                ) from e
            for p in self.include.patterns:
                if not p.exclusion and any(c in _pattern_without_trailing_glob(p) for c in _PATTERN_CHARS):
                    self.only_prefix_includes = False
                    break
        if opts.exclude_patterns:
            try:
                self.exclude = PatternMatcher(opts.exclude_patterns)
            except ValueError as e:
                raise PatternError(
                    f"invalid excludepatterns: {_go_list(opts.exclude_patterns)}: {e}", opts.exclude_patterns
                ) from e
            for p in self.exclude.patterns:
                if p.exclusion and any(c in _pattern_without_trailing_glob(p) for c in _PATTERN_CHARS):
                    self.only_prefix_exclude_exceptions = False
                    break
        self.map_fn = opts.map
        self.parent_dirs: list[_VisitedDir] = []
        #: whether the last visited entry was filtered out by the patterns
        self.last_skipped = False

    def _prefix_can_match(self, matcher: PatternMatcher, path: str, exclusion: bool) -> bool:
        dir_slash = path + "/"
        for pat in matcher.patterns:
            if pat.exclusion != exclusion:
                continue
            if (_pattern_without_trailing_glob(pat) + "/").startswith(dir_slash):
                return True
        return False

    def visit(self, path: str, is_dir: bool, stat: Stat, emit: Callable[[Stat], None]) -> _Skip:
        """Decide about one entry; ``emit`` receives it (and any pending parents)."""
        matchers = self.include is not None or self.exclude is not None
        dir_rec: _VisitedDir | None = None
        self.last_skipped = True
        if matchers:
            while self.parent_dirs and not path.startswith(self.parent_dirs[-1].path_with_sep):
                self.parent_dirs.pop()
            if is_dir:
                dir_rec = _VisitedDir(stat=stat, path_with_sep=path + "/")

        skip = False
        if self.include is not None:
            parent_info = self.parent_dirs[-1].include_info if self.parent_dirs else MatchInfo()
            try:
                m, info = self.include.matches_using_parent_results(path, parent_info)
            except ValueError as e:
                raise WalkError(errno.EINVAL, f"failed to match includepatterns: {e}") from e
            if dir_rec is not None:
                dir_rec.include_info = info
            if not m:
                if (
                    is_dir
                    and self.only_prefix_includes
                    and not self._prefix_can_match(self.include, path, exclusion=False)
                ):
                    # Optimization: no include pattern could match anything inside.
                    return _Skip.SKIP_DIR
                skip = True

        if self.exclude is not None:
            parent_info = self.parent_dirs[-1].exclude_info if self.parent_dirs else MatchInfo()
            try:
                m, info = self.exclude.matches_using_parent_results(path, parent_info)
            except ValueError as e:
                raise WalkError(errno.EINVAL, f"failed to match excludepatterns: {e}") from e
            if dir_rec is not None:
                dir_rec.exclude_info = info
            if m:
                if is_dir and self.only_prefix_exclude_exceptions:
                    # Optimization: no exception to the excludes could match inside.
                    if not self.exclude.exclusions():
                        return _Skip.SKIP_DIR
                    if not self._prefix_can_match(self.exclude, path, exclusion=True):
                        return _Skip.SKIP_DIR
                skip = True

        self.last_skipped = skip
        try:
            return self._keep(path, stat, skip, dir_rec, emit)
        finally:
            # Go defers this append, so it happens on every return below this point.
            if dir_rec is not None:
                self.parent_dirs.append(dir_rec)

    def _keep(
        self, path: str, stat: Stat, skip: bool, dir_rec: _VisitedDir | None, emit: Callable[[Stat], None]
    ) -> _Skip:
        if skip:
            return _Skip.CONTINUE
        if dir_rec is not None:
            dir_rec.called_fn = True
        if self.map_fn is not None:
            result = self.map_fn(stat.path, stat)
            if result == MapResult.SKIP_DIR:
                return _Skip.SKIP_DIR
            if result == MapResult.EXCLUDE:
                return _Skip.CONTINUE
        for parent in self.parent_dirs:
            if parent.skip_fn:
                return _Skip.SKIP_DIR
            if parent.called_fn:
                continue
            if self.map_fn is not None:
                result = self.map_fn(parent.stat.path, parent.stat)
                if result == MapResult.EXCLUDE:
                    continue
                if result == MapResult.SKIP_DIR:
                    parent.skip_fn = True
                    return _Skip.SKIP_DIR
            parent.called_fn = True
            emit(parent.stat)
        emit(stat)
        return _Skip.CONTINUE


# --------------------------------------------------------------------------- walk


def _open_root(root: str) -> int:
    # The root may itself be a symlink (Go's NewFS resolves it with EvalSymlinks);
    # everything beneath it is opened without following links.
    try:
        return os.open(os.path.realpath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise WalkError(e.errno, f"cannot open {root}: {e.strerror}") from e


def _raw_walk(root: str, filt: _FilterFS | None, reset_ids: bool) -> Generator[Stat, None, None]:
    """Go's ``filepath.WalkDir`` + ``mkstat`` + the filters, as a generator of Stats."""
    inodes: dict[tuple[int, int], str] = {}
    root_fd = _open_root(root)
    stack: list[_Dir] = []
    pending: list[Stat] = []
    emit = pending.append
    try:
        try:
            stack.append(_Dir(root_fd, "", _list_dir(root_fd)))
        except OSError as e:
            os.close(root_fd)
            raise WalkError(e.errno, f"cannot read {root}: {e.strerror}") from e
        while stack:
            top = stack[-1]
            if top.index >= len(top.entries):
                stack.pop()
                os.close(top.fd)
                continue
            _, name, is_dir = top.entries[top.index]
            top.index += 1
            rel = f"{top.rel}/{name}" if top.rel else name
            abs_path = os.path.join(root, rel)
            try:
                stat = _mkstat(top.fd, name, rel, abs_path, inodes)
            except FileNotFoundError:
                continue  # vanished since the listing
            except OSError as e:
                if isinstance(e, WalkError):
                    raise
                raise WalkError(e.errno, f"lstat {abs_path}: {e.strerror}") from e
            if gomode.is_dir(stat.mode) != is_dir:
                # Replaced between readdir and lstat: trust lstat (what we'll send).
                is_dir = gomode.is_dir(stat.mode)
            if reset_ids:
                stat.uid = 0
                stat.gid = 0
            if filt is None:
                emit(stat)
                ctl = _Skip.CONTINUE
            else:
                ctl = filt.visit(rel, is_dir, stat, emit)
            yield from pending
            pending.clear()
            if ctl == _Skip.SKIP_DIR:
                if not is_dir:
                    # SkipDir on a file skips the rest of its directory (WalkDir).
                    top.index = len(top.entries)
                continue
            if is_dir:
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=top.fd)
                except OSError as e:
                    if _is_not_exist(e) or e.errno == errno.ELOOP:
                        continue  # vanished or swapped for a symlink: don't descend
                    raise WalkError(e.errno, f"open {abs_path}: {e.strerror}") from e
                try:
                    entries = _list_dir(fd)
                except OSError as e:
                    os.close(fd)
                    if _is_not_exist(e):
                        continue
                    if filt is not None and filt.last_skipped and e.errno in (errno.EACCES, errno.EPERM):
                        continue  # a filtered-out dir we can't read is no error (as in Go)
                    raise WalkError(e.errno, f"readdir {abs_path}: {e.strerror}") from e
                stack.append(_Dir(fd, rel, entries))
    finally:
        for d in stack:
            os.close(d.fd)


def _hardlink_reset(stats: Iterator[Stat]) -> Iterator[Stat]:
    """fsutil's ``WithHardlinkReset``: re-point hardlinks whose first path was filtered."""
    seen: dict[str, str] = {}
    for stat in stats:
        if gomode.is_dir(stat.mode) or gomode.is_symlink(stat.mode):
            yield stat
            continue
        if stat.linkname:
            first = seen.get(stat.linkname)
            if first is None:
                seen[stat.linkname] = stat.path
                stat.linkname = ""
            elif first != stat.path:
                stat.linkname = first
        seen[stat.path] = stat.path
        yield stat


def walk(
    root: str | os.PathLike[str],
    opts: FilterOptions | None = None,
    *,
    reset_ids: bool = True,
) -> Generator[Stat, None, None]:
    """Yield the fsutil ``Stat`` of every entry below ``root`` that a sender would send.

    A generator, so huge trees stream; close it (or exhaust it) to release the
    directory descriptors it holds (one per level of the current path). Raises
    :class:`WalkError` when part of the tree can't be read and :class:`ValueError`
    for malformed patterns.
    """
    root_s = os.fspath(root)
    filt = _FilterFS(root_s, opts) if opts is not None else None
    gen = _raw_walk(root_s, filt, reset_ids)
    try:
        yield from _hardlink_reset(gen)
    finally:
        gen.close()


def walk_order_key(path: str) -> tuple[bytes, ...]:
    """Sort key that reproduces the walk order of ``/``-separated paths (tests, receivers)."""
    return tuple(os.fsencode(part) for part in path.split("/"))
