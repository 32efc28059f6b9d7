"""One file of a build result: :class:`FileStat`."""

from __future__ import annotations

import stat as _stat
from dataclasses import dataclass

from .._fsutil import gomode
from .._pb.fsutil import types as fstypes

__all__ = ["FileStat"]


@dataclass(frozen=True, slots=True)
class FileStat:
    """One file of a build result, as the daemon reports it.

    ``mode`` is POSIX (``stat.S_ISDIR(st.mode)`` works; the daemon sends Go's
    ``os.FileMode``, converted by :func:`~llblib_async._fsutil.gomode.to_posix`);
    ``mod_time`` is in ns since the epoch.
    """

    path: str
    mode: int
    size: int
    uid: int
    gid: int
    mod_time: int
    linkname: str = ""

    @classmethod
    def from_pb(cls, st: fstypes.Stat) -> FileStat:
        return cls(
            path=st.path,
            mode=gomode.to_posix(st.mode),
            size=st.size,
            uid=st.uid,
            gid=st.gid,
            mod_time=st.mod_time,
            linkname=st.linkname,
        )

    @property
    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.mode)
