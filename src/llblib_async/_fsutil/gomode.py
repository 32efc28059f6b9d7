"""Go ``os.FileMode`` <-> POSIX ``st_mode``.

fsutil puts Go's ``os.FileMode`` on the wire (``Stat.mode``), not the POSIX
``st_mode``: permission bits are the same, but file type and the
setuid/setgid/sticky flags live in the high bits. The conversions below follow Go's
``os.fillFileStatFromSys`` (POSIX -> Go) and ``os.syscallMode`` (Go -> chmod bits).
"""

from __future__ import annotations

import stat as _stat

MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19

MODE_PERM = 0o777
#: Go's ``os.ModeType``: any of these bits means "not a regular file".
MODE_TYPE = (
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR
)


def from_posix(st_mode: int) -> int:
    """Go ``FileMode`` of a POSIX ``st_mode`` (as ``os.Lstat`` would report it).

    The socket bit is kept here; fsutil's sender clears it (and so drops sockets'
    type) -- :mod:`.walk` skips sockets altogether.
    """
    mode = st_mode & MODE_PERM
    fmt = _stat.S_IFMT(st_mode)
    if fmt == _stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif fmt == _stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif fmt == _stat.S_IFDIR:
        mode |= MODE_DIR
    elif fmt == _stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif fmt == _stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif fmt == _stat.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & _stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & _stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & _stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def chmod_bits(mode: int) -> int:
    """The bits to pass to ``chmod`` for a Go ``FileMode`` (perms + setuid/setgid/sticky)."""
    bits = mode & MODE_PERM
    if mode & MODE_SETUID:
        bits |= _stat.S_ISUID
    if mode & MODE_SETGID:
        bits |= _stat.S_ISGID
    if mode & MODE_STICKY:
        bits |= _stat.S_ISVTX
    return bits


def file_type(mode: int) -> int:
    """The POSIX ``S_IF*`` file type of a Go ``FileMode`` (``S_IFREG`` if no type bit)."""
    if mode & MODE_DIR:
        return _stat.S_IFDIR
    if mode & MODE_SYMLINK:
        return _stat.S_IFLNK
    if mode & MODE_DEVICE:
        return _stat.S_IFCHR if mode & MODE_CHAR_DEVICE else _stat.S_IFBLK
    if mode & MODE_NAMED_PIPE:
        return _stat.S_IFIFO
    if mode & MODE_SOCKET:
        return _stat.S_IFSOCK
    return _stat.S_IFREG


def to_posix(mode: int) -> int:
    """Full POSIX ``st_mode`` (file type + chmod bits) of a Go ``FileMode``."""
    return file_type(mode) | chmod_bits(mode)


def is_regular(mode: int) -> bool:
    """True if no type bit is set: fsutil only lets such entries be requested (REQ)."""
    return mode & MODE_TYPE == 0


def is_dir(mode: int) -> bool:
    return bool(mode & MODE_DIR)


def is_symlink(mode: int) -> bool:
    return bool(mode & MODE_SYMLINK)


def go_major(rdev: int) -> int:
    """Device major number as fsutil computes it (``stat_unix.go``, not glibc's)."""
    return (rdev >> 8) & 0xFFF


def go_minor(rdev: int) -> int:
    return (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00)
