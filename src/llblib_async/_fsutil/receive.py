"""fsutil receiver: a directory tree the daemon sends, written beneath a destination.

The ``local`` exporter sends its result with fsutil's diffcopy protocol, the roles of
:mod:`.send` reversed (daemon = sender; the FileSend attachable,
:mod:`llblib_async.attachables.filesend`, calls :func:`receive_tree`). We create
directories, symlinks, hardlinks and special files as the STATs arrive, REQ every
regular file, write its DATA, then apply modes (setuid/setgid/sticky included) and
mtimes, and send FIN once the walk is over and every file is complete. Go:
``fsutil/receive.go`` with ``ReceiveRoot(Merge: true)``.

Every path is validated (clean, relative, in walk order, parents sent before
children -- Go's ``Validator``) and all writes happen beneath the destination without
following symlinks (:mod:`.beneath`), so a hostile or buggy stream can't write outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import shutil
import stat as _stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from grpclib.const import Status

from .._pb.fsutil.types import Stat
from . import gomode, wire
from .beneath import Beneath
from .patterns import clean, go_dir

__all__ = ["OrderValidator", "ReceiveStats", "receive_tree", "validate_path"]

#: Buffered DATA per file before it is queued for the disk thread.
WRITE_BLOCK = 1024 * 1024


# --------------------------------------------------------------------------- validation


def _compare_path(p1: str, p2: str) -> int:
    """fsutil's ``ComparePath``: byte order with ``/`` sorting before everything."""
    if p1.isascii() and p2.isascii():
        # (paths hold no NUL: "/" as "\x00" sorts first; for ASCII, str order = byte order)
        k1, k2 = p1.replace("/", "\x00"), p2.replace("/", "\x00")
        return (k1 > k2) - (k1 < k2)
    b1, b2 = os.fsencode(p1), os.fsencode(p2)
    for c1, c2 in zip(b1, b2, strict=False):
        if c1 == c2:
            continue
        if (c2 != 0x2F and c1 < c2) or c1 == 0x2F:
            return -1
        return 1
    return len(b1) - len(b2)


def validate_path(p: str) -> None:
    """Reject paths that aren't clean and relative or that climb out (``ValueError``)."""
    wrapped = f"/{p}/"
    if "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped and "\x00" not in p:
        # Non-empty, relative, no empty, "." or ".." component: clean, can't climb.
        return
    if p in ("", "."):
        raise ValueError(f"invalid path {p!r}")
    if "\x00" in p:
        raise ValueError(f"invalid path {p!r}: NUL byte")
    if p != clean(p):
        raise ValueError(f"unclean path {p!r}")
    if p.startswith("/"):
        raise ValueError(f"absolute path {p!r}")
    d = go_dir(p)
    if p == ".." or d == ".." or p.startswith("../"):
        raise ValueError(f"path escapes the destination: {p!r}")


def _not_before(a: str, b: str) -> bool:
    """``a >= b`` in byte order."""
    if a.isascii() and b.isascii():
        return a >= b
    return os.fsencode(a) >= os.fsencode(b)


class OrderValidator:
    """fsutil's ``Validator``: entries in walk order, each parent sent as a directory first."""

    def __init__(self) -> None:
        self._parents: list[list[str]] = [["", ""]]  # [dir, last base seen in it]

    def check(self, p: str, is_dir: bool) -> None:
        validate_path(p)
        d, _, base = p.rpartition("/")  # p is clean and relative: Go's path.Dir and Base
        # Innermost remembered directory that sorts before or at d (Go: sort.Search).
        i = len(self._parents) - 1
        while i > 0 and _compare_path(self._parents[i][0], d) > 0:
            i -= 1
        del self._parents[i + 1 :]
        last = self._parents[i]
        if d != self._parents[-1][0] or _not_before(last[1], base):
            prev = f"{last[0]}/{last[1]}" if last[0] else last[1]
            raise ValueError(f"changes out of order: {p!r} {prev!r}")
        last[1] = base
        if is_dir:
            self._parents.append([p, ""])


# --------------------------------------------------------------------------- directory receiver


@dataclass(slots=True)
class ReceiveStats:
    """Progress of one directory transfer; ``complete`` once everything is on disk.

    (The daemon's Solve may return before our handler saw its final FIN: the tree is
    complete when *we* send FIN, which is what ``complete`` records.)
    """

    entries: int = 0
    files: int = 0
    bytes_received: int = 0
    complete: bool = False


@dataclass(slots=True)
class _Pending:
    """A requested file: data is buffered on the event loop, ``fd`` is used by the disk thread."""

    path: str
    stat: Stat
    fd: int = -1
    buffered: list[bytes | memoryview] = field(default_factory=list)
    buffered_size: int = 0

    def take(self) -> list[bytes | memoryview]:
        """The buffered DATA, to be written with one ``writev`` (no join)."""
        data, self.buffered = self.buffered, []
        self.buffered_size = 0
        return data


_IOV_MAX = 1024  # buffers per writev (Linux's limit)


def _write_all(fd: int, buffers: list[bytes | memoryview]) -> None:
    """Write the buffers in order with as few ``writev`` calls as the kernel allows."""
    pending = [memoryview(b) for b in buffers if len(b)]
    while pending:
        batch = pending[:_IOV_MAX]
        n = os.writev(fd, batch)
        # drop what was written (a short write only when the disk is full or a signal hit)
        i = 0
        while i < len(batch) and n >= len(batch[i]):
            n -= len(batch[i])
            i += 1
        del pending[:i]
        if n:
            pending[0] = pending[0][n:]


class _DiskWriter:
    """The filesystem side of the receiver; every method runs in the disk thread."""

    def __init__(self, dest: Path) -> None:
        self.root = Beneath(dest, create=True)
        self.dirs: list[tuple[str, Stat]] = []
        # Directories this transfer created: nothing can be in the way inside them, so
        # their entries skip the lstat that looks for something to replace.
        self._fresh: set[str] = set()
        # Regular files not created yet: like Go's lazyFileWriter, a file is created
        # by its first write (one open instead of create, close and open again).
        self._lazy: set[str] = set()

    def close(self) -> None:
        self.root.close()

    def _remove_existing(self, rel: str, keep_dir: bool) -> bool:
        """Remove whatever is at ``rel``; returns True if a directory was kept."""
        pfd, base = self.root.parent(rel)
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if _stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self.root.forget_dirs()
            pfd, base = self.root.parent(rel)
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    def _xattrs(self, rel: str, stat: Stat) -> None:
        for key, value in stat.xattrs.items():
            # Best effort like Go (user.* may be unsupported, security.* privileged).
            with contextlib.suppress(OSError):
                os.setxattr(self.root.proc_path(rel), key, value, follow_symlinks=False)

    def entry(self, stat: Stat) -> bool:
        """Create one entry; returns True if it is a regular file whose data we need."""
        rel, mode = stat.path, stat.mode
        fresh = rel.rpartition("/")[0] in self._fresh
        if gomode.is_dir(mode):
            if fresh or not self._remove_existing(rel, keep_dir=True):
                pfd, base = self.root.parent(rel)
                # Owner-writable until the end, so entries can be created inside even
                # for read-only modes; the final mode is applied in finish().
                os.mkdir(base, 0o700, dir_fd=pfd)
                self._fresh.add(rel)
            self._xattrs(rel, stat)
            self.dirs.append((rel, stat))
            return False
        if not fresh:
            self._remove_existing(rel, keep_dir=False)
        pfd, base = self.root.parent(rel)
        if gomode.is_symlink(mode):
            os.symlink(stat.linkname, base, dir_fd=pfd)
            self._xattrs(rel, stat)
            os.utime(base, ns=(stat.mod_time, stat.mod_time), dir_fd=pfd, follow_symlinks=False)
            return False
        if stat.linkname and gomode.is_regular(mode):
            # A hardlink to an earlier path of this transfer (checked by the caller),
            # whose data may not have come yet.
            if stat.linkname in self._lazy:
                self._lazy.discard(stat.linkname)
                os.close(self.root.open(stat.linkname, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            src_fd, src_base = self.root.parent(stat.linkname)
            os.link(src_base, base, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False)
            return False
        if mode & (gomode.MODE_DEVICE | gomode.MODE_NAMED_PIPE):
            dev = os.makedev(stat.devmajor, stat.devminor) if mode & gomode.MODE_DEVICE else 0
            os.mknod(base, gomode.file_type(mode) | 0o600, dev, dir_fd=pfd)
            self._finish_entry(rel, stat)
            return False
        if not gomode.is_regular(mode):
            raise ValueError(f"unsupported file type for {rel!r}: mode {mode:#o}")
        self._lazy.add(rel)  # created by write()
        return True

    def _finish_entry(self, rel: str, stat: Stat) -> None:
        """Mode and mtime of a device or FIFO we just created (mknod applies the umask)."""
        pfd, base = self.root.parent(rel)
        self._xattrs(rel, stat)
        # Linux has no lchmod; the node was created by us an instant ago, and opening a
        # device to fchmod it could have side effects.
        os.chmod(base, gomode.chmod_bits(stat.mode), dir_fd=pfd)
        os.utime(base, ns=(stat.mod_time, stat.mod_time), dir_fd=pfd, follow_symlinks=False)

    def write(self, pending: _Pending, data: list[bytes | memoryview], close: bool) -> None:
        if pending.fd < 0:
            if pending.path in self._lazy:
                self._lazy.discard(pending.path)
                pending.fd = self.root.open(pending.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            else:
                pending.fd = self.root.open(pending.path, os.O_WRONLY)
        _write_all(pending.fd, data)
        if close:
            fd, pending.fd = pending.fd, -1
            try:
                self._xattrs(pending.path, pending.stat)
                # chmod after the data: writing clears setuid/setgid for non-root.
                os.fchmod(fd, gomode.chmod_bits(pending.stat.mode))
                os.utime(fd, ns=(pending.stat.mod_time, pending.stat.mod_time))
            finally:
                os.close(fd)

    def abort(self, pendings: list[_Pending]) -> None:
        for pending in pendings:
            if pending.fd >= 0:
                os.close(pending.fd)
                pending.fd = -1

    def finish(self) -> None:
        """Final directory modes and mtimes (after everything inside was written)."""
        # Reverse walk order: children before their parent, so a parent's final
        # (maybe read-only) mode and its mtime are set after everything inside.
        for rel, stat in reversed(self.dirs):
            pfd, base = self.root.parent(rel)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.fchmod(fd, gomode.chmod_bits(stat.mode))
                os.utime(fd, ns=(stat.mod_time, stat.mod_time))
            finally:
                os.close(fd)


@dataclass(frozen=True, slots=True)
class _DiskOp:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    nbytes: int
    always: bool  # run even after a failure (barriers)


class _DiskThread:
    """Runs the receiver's filesystem operations, in order, in one dedicated thread.

    Creating a file costs ~0.5 ms on a real disk and a worker-thread round trip per
    entry (wake-up, GIL hand-off) costs as much again, so neither inline calls nor
    ``to_thread`` per operation keep up with trees of many small files. Instead the
    event loop queues operations without waiting for each, and only waits when too
    much is queued (``max_ops`` operations or ``max_bytes`` of file data: that is the
    backpressure towards the sender) or at a :meth:`barrier`. The first failure is
    kept and raised by the next :meth:`submit`/:meth:`barrier`; later operations are
    skipped.
    """

    def __init__(self, dest: str, *, max_ops: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._dest = dest
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_DiskOp | None] = queue.SimpleQueue()
        self._max_ops = max_ops
        self._max_bytes = max_bytes
        # Each counter is written by one thread only; the lock orders the "is there
        # room?" check of the loop with the "wake the loop" check of the thread.
        self._submitted_ops = self._submitted_bytes = 0
        self._done_ops = self._done_bytes = 0
        self._lock = threading.Lock()
        self._waiting = False
        self._room = asyncio.Event()
        self._exited = self._loop.create_future()
        self.error: BaseException | None = None
        self.abort = False
        self._thread: threading.Thread | None = None

    def _full(self) -> bool:
        return (
            self._submitted_ops - self._done_ops >= self._max_ops
            or self._submitted_bytes - self._done_bytes >= self._max_bytes
        )

    def _drained(self) -> bool:
        """Room for a good batch again (half empty): when a waiting loop is woken.

        Waking it as soon as one operation is done made the two threads alternate an
        operation at a time, with a thread-safe wake-up of the loop for each.
        """
        return (
            self._submitted_ops - self._done_ops <= self._max_ops // 2
            and self._submitted_bytes - self._done_bytes <= self._max_bytes // 2
        )

    def _run(self) -> None:
        try:
            while (op := self._queue.get()) is not None:
                if op.always or (self.error is None and not self.abort):
                    try:
                        op.fn(*op.args)
                    except BaseException as e:
                        self.error = e
                with self._lock:
                    self._done_ops += 1
                    self._done_bytes += op.nbytes
                    if self._waiting and (self._drained() or self.error is not None):
                        self._waiting = False
                        self._loop.call_soon_threadsafe(self._room.set)
        finally:
            self._loop.call_soon_threadsafe(self._set_exited)

    def _set_exited(self) -> None:
        if not self._exited.done():
            self._exited.set_result(None)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise wire.TransferError(f"cannot write {self._dest}: {self.error}") from self.error

    async def submit(self, fn: Callable[..., Any], *args: Any, nbytes: int = 0, always: bool = False) -> None:
        """Queue ``fn(*args)``; waits only while the queue is full."""
        self._raise_if_failed()
        while True:
            with self._lock:
                if not self._full():
                    break
                self._room.clear()
                self._waiting = True
            await self._room.wait()
            self._raise_if_failed()
        self._submitted_ops += 1
        self._submitted_bytes += nbytes
        self._queue.put(_DiskOp(fn, args, nbytes, always))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llblib-async-filesend", daemon=True)
            self._thread.start()

    async def barrier(self) -> None:
        """Wait until everything queued so far ran; raise the first failure."""
        if self._thread is None:
            return
        done = self._loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        await self.submit(self._loop.call_soon_threadsafe, wake, always=True)
        await done
        self._raise_if_failed()

    async def stop(self) -> None:
        """Let the thread finish what is queued (skipping it if ``abort``) and exit."""
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.shield(self._exited)


async def receive_tree(
    conn: wire.PacketConn, dest: str | os.PathLike[str], stats: ReceiveStats | None = None
) -> ReceiveStats:
    """Run the receiver side of a diffcopy into ``dest`` (merging into what is there).

    Raises :class:`~.wire.TransferError` after sending an ERR packet to the peer
    (unless the peer reported the error itself).
    """
    if stats is None:
        stats = ReceiveStats()
    try:
        writer = await anyio.to_thread.run_sync(_DiskWriter, Path(dest))
    except OSError as e:
        err = wire.TransferError(f"cannot create {dest}: {e.strerror}")
        with contextlib.suppress(Exception):
            await conn.send(wire.encode_err(err.message))
        raise err from e
    disk = _DiskThread(os.fspath(dest))
    order = OrderValidator()
    seen_files: set[str] = set()
    pending: dict[int, _Pending] = {}
    opened: list[_Pending] = []  # every file the disk thread may hold open
    index = 0
    walk_done = False
    fin_sent = False
    # REQs are sent by their own task, never by the loop that reads the stream: if
    # the sender stops reading while it is busy sending DATA (Go's sender does once
    # 128 requests are queued), a loop blocked on sending a REQ would stop reading
    # that DATA -- a deadlock (seen with 20k files). Go sends REQs from per-file
    # goroutines for the same reason. A REQ is a few bytes, one per file.
    requests, to_request = anyio.create_memory_object_stream[int](math.inf)
    failure = wire.FirstFailure()

    # Packets sent back to back share one write where the connection supports it.
    send_many: Callable[[list[bytes]], Awaitable[None]] | None = getattr(conn, "send_many", None)

    async def send_requests() -> None:
        async with to_request:
            while True:
                try:
                    file_id = to_request.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        file_id = await to_request.receive()
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
                # The REQs of a batch of STATs go out together, in one BytesMessage.
                batch = [wire.encode_req(file_id)]
                while True:
                    try:
                        batch.append(wire.encode_req(to_request.receive_nowait()))
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                if send_many is not None:
                    await send_many(batch)
                else:
                    for req in batch:
                        await conn.send(req)

    async def read_stream() -> None:
        nonlocal index, walk_done, fin_sent
        with requests:
            while True:
                if walk_done and not pending and not fin_sent:
                    # FIN only once everything is on disk, modes and directory mtimes
                    # included.
                    await disk.submit(writer.finish)
                    await disk.barrier()
                    stats.complete = True
                    await conn.send(wire.FIN)
                    fin_sent = True
                data = await conn.recv()
                if data is None:
                    raise wire.TransferError("sender ended the stream before FIN", send_err=False)
                p = wire.decode(data)
                if p.type == wire.PT.PACKET_STAT:
                    if walk_done:
                        raise wire.TransferError("STAT after the end of the walk", Status.INVALID_ARGUMENT)
                    if p.stat is None:
                        walk_done = True
                        continue
                    st = p.stat
                    is_dir = gomode.is_dir(st.mode)
                    try:
                        order.check(st.path, is_dir)
                        if not is_dir and not gomode.is_symlink(st.mode):
                            if st.linkname:
                                validate_path(st.linkname)
                                if st.linkname not in seen_files:
                                    raise ValueError(
                                        f"invalid link {st.path} to unknown path: {st.linkname!r}"
                                    )
                            else:
                                seen_files.add(st.path)
                    except ValueError as e:
                        raise wire.TransferError(str(e), Status.INVALID_ARGUMENT) from e
                    # Queued, not awaited: the disk thread runs operations in order, so
                    # the file exists before its data is written.
                    await disk.submit(writer.entry, st)
                    if gomode.is_regular(st.mode) and not st.linkname:
                        new_file = _Pending(st.path, st)
                        pending[index] = new_file
                        opened.append(new_file)
                        requests.send_nowait(index)
                    index += 1
                    stats.entries += 1
                elif p.type == wire.PT.PACKET_DATA:
                    pf = pending.get(p.id)
                    if pf is None:
                        raise wire.TransferError(f"invalid file request {p.id}", Status.INVALID_ARGUMENT)
                    if p.data:
                        pf.buffered.append(p.data)
                        pf.buffered_size += len(p.data)
                        stats.bytes_received += len(p.data)
                        if pf.buffered_size >= WRITE_BLOCK:
                            size = pf.buffered_size
                            await disk.submit(writer.write, pf, pf.take(), False, nbytes=size)
                    else:
                        del pending[p.id]
                        size = pf.buffered_size
                        await disk.submit(writer.write, pf, pf.take(), True, nbytes=size)
                        stats.files += 1
                elif p.type == wire.PT.PACKET_FIN:
                    if not fin_sent:
                        raise wire.TransferError("sender sent FIN before the transfer was complete")
                    return
                elif p.type == wire.PT.PACKET_ERR:
                    msg = bytes(p.data).decode("utf-8", "replace")
                    raise wire.TransferError(f"error from sender: {msg}", send_err=False)
                # REQ makes no sense towards a receiver; Go ignores it too.

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(failure.wrap(tg.cancel_scope, send_requests))
            tg.start_soon(failure.wrap(tg.cancel_scope, read_stream))
        failure.raise_if_failed()
        return stats
    except wire.TransferError as e:
        disk.abort = True
        if e.send_err:
            with contextlib.suppress(Exception):  # the stream may be gone; the error matters
                await conn.send(wire.encode_err(e.message))
        raise
    except BaseException:
        disk.abort = True
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await disk.stop()
            await anyio.to_thread.run_sync(writer.abort, opened)
            await anyio.to_thread.run_sync(writer.close)
