"""Filesystem access confined to one directory tree (no symlink is ever followed).

Paths from the wire (or from an earlier walk of a directory that may have changed
since) are resolved component by component from an open descriptor of the root with
``O_NOFOLLOW``: a symlink anywhere in the path -- pointing outside or not -- makes
the operation fail instead of escaping. The same guarantee Go gets from ``os.Root``
(stricter: Go follows symlinks that stay inside the root; our peers never need that
because fsutil's ordering rules require parents to be sent as real directories).
"""

from __future__ import annotations

import collections
import errno
import os
import sys

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_rel(path: str) -> list[str]:
    """The components of a clean relative ``/``-path; ``ValueError`` for anything else."""
    if not path or path.startswith("/"):
        raise ValueError(f"invalid path {path!r}: must be relative")
    parts = path.split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise ValueError(f"invalid path {path!r}: must be clean, without '..'")
        if "\x00" in p:
            raise ValueError(f"invalid path {path!r}: NUL byte")
    return parts


class Beneath:
    """An open directory and descriptor-relative operations beneath it.

    Parent directory descriptors are cached (a transfer touches many entries of the
    same directory in a row); :meth:`forget_dirs` drops the cache when directories
    are removed or replaced. Not thread-safe: use from one thread at a time.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False, cache_size: int = 32) -> None:
        root = os.fspath(root)
        if create:
            os.makedirs(root, mode=0o755, exist_ok=True)
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._cache_size = cache_size

    def close(self) -> None:
        self.forget_dirs()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Beneath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget_dirs(self) -> None:
        while self._cache:
            _, fd = self._cache.popitem()
            os.close(fd)

    def dir_fd(self, rel_dir: str) -> int:
        """Descriptor of the directory ``rel_dir`` ("" = root); owned by the cache."""
        if rel_dir == "":
            return self.fd
        fd = self._cache.get(rel_dir)
        if fd is not None:
            self._cache.move_to_end(rel_dir)
            return fd
        parent, _, name = rel_dir.rpartition("/")
        pfd = self.dir_fd(parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno == errno.ELOOP or e.errno == errno.ENOTDIR:
                raise OSError(e.errno, f"{rel_dir} is not a directory (symlinks are not followed)") from e
            raise
        self._cache[rel_dir] = fd
        if len(self._cache) > self._cache_size:
            _, old = self._cache.popitem(last=False)
            os.close(old)
        return fd

    def parent(self, rel: str) -> tuple[int, str]:
        """``(descriptor of the parent directory, base name)`` of the relative path."""
        parts = split_rel(rel)
        return self.dir_fd("/".join(parts[:-1])), parts[-1]

    def open(self, rel: str, flags: int, mode: int = 0o600) -> int:
        """``open(2)`` beneath the root; the last component is never followed either."""
        pfd, base = self.parent(rel)
        return os.open(base, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)

    def lstat(self, rel: str) -> os.stat_result | None:
        pfd, base = self.parent(rel)
        try:
            return os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return None

    def proc_path(self, rel: str) -> str:
        """A path naming ``rel`` for calls without ``dir_fd`` (xattrs), still beneath the root."""
        pfd, base = self.parent(rel)
        if sys.platform == "linux":
            return f"/proc/self/fd/{pfd}/{base}"
        return os.path.join(self.root, rel)  # pragma: no cover
