"""A minimal busybox root filesystem, made from Debian's ``busybox-static``.

Tests need *some* image to run commands in, and there is no Docker Hub.  A static busybox
plus its applet links is a complete enough userland (``sh``, ``cat``, ``sleep``, ``id``…)
to be copied into ``scratch`` as a local context, or imported into dockerd.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from .prerequisite import PrerequisiteError

BUSYBOX = "/bin/busybox"

_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
_GROUP = """\
root:x:0:
nobody:x:65534:
"""
_PT_INTERP = 3


def _is_static_elf(path: str) -> bool:
    """True for an ELF executable without a program interpreter (i.e. statically linked)."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF":
            return False
        is64, endian = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if is64:
            (phoff,) = struct.unpack_from(endian + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(endian + "HH", ident, 0x36)
        else:
            (phoff,) = struct.unpack_from(endian + "I", ident, 0x1C)
            phentsize, phnum = struct.unpack_from(endian + "HH", ident, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != _PT_INTERP for i in range(phnum))


def busybox_rootfs(dest: Path, *, busybox: str = BUSYBOX) -> Path:
    """Build a minimal root filesystem in ``dest`` (created; must not exist or be empty).

    Layout: ``bin/busybox`` plus relative symlinks for every applet where busybox puts it
    (``bin/sh``, ``usr/bin/env``, ``sbin/ip``…), ``etc/passwd`` and ``etc/group`` with root
    and nobody, ``tmp`` (1777), ``root`` (0700), and empty ``dev``, ``proc``, ``sys``,
    ``run``, ``var``, ``home`` mount points.  Returns ``dest``.
    """
    if not os.access(busybox, os.X_OK):
        raise PrerequisiteError(
            f"the busybox rootfs needs {busybox}, which is missing; "
            "`apt-get install -y --no-install-recommends busybox-static`"
        )
    if not _is_static_elf(busybox):
        raise PrerequisiteError(
            f"{busybox} is dynamically linked (Debian package `busybox`), so it cannot run in an "
            "empty rootfs; `apt-get install -y busybox-static` (it replaces `busybox`)"
        )
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    listing = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=30)
    for directory in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "run",
        "var",
        "home",
    ):
        (dest / directory).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").mkdir(mode=0o1777)
    (dest / "tmp").chmod(0o1777)  # mkdir's mode is filtered by the umask
    (dest / "root").mkdir(mode=0o700)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    (dest / "bin" / "busybox").chmod(0o755)
    for applet in listing.stdout.split():
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(dest / "bin" / "busybox", link.parent))
    (dest / "etc" / "passwd").write_text(_PASSWD)
    (dest / "etc" / "group").write_text(_GROUP)
    return dest
