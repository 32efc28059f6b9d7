"""fsutil sender: a local directory tree sent to the daemon (one ``FileSync/DiffCopy`` call).

The FileSync attachable (:mod:`llblib_async.attachables.filesync`) calls
:func:`send_tree` with the directory the daemon asked for; it sends it with fsutil's
diffcopy protocol (spec §3.1; Go: ``fsutil/send.go``, ``buildkit/session/filesync``):

1. we send one STAT per entry (walk order, see :mod:`.walk`) and an empty STAT;
2. the daemon sends REQ{id} for the regular files whose content it needs (id = index
   of the entry in the STAT sequence), possibly before the walk is over;
3. we answer each REQ with DATA{id} chunks (256 KiB; Go: 32 KiB) and an empty
   DATA{id}, up to 4 files in parallel;
4. the daemon sends FIN when done, we answer FIN and end the call.

Files are read in blocks in worker threads and sent chunk by chunk, each send
awaiting the HTTP/2 flow control, so a huge file needs neither memory nor a
blocked event loop; small files are read in batches, one worker-thread call for
those requested meanwhile. A file that vanished or changed between its STAT and its REQ
fails the transfer with an ERR packet and a gRPC error naming the path (Go would
send whatever is there now). Only paths produced by the walk are ever opened, and
they are resolved beneath the root without following symlinks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import itertools
import os
import stat as _stat
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from grpclib.const import Status

from .._pb.fsutil.types import Stat
from . import gomode, wire
from .beneath import Beneath
from .walk import FilterOptions, WalkError, walk

__all__ = ["DEFAULT_CHUNK", "SendStats", "parse_request_options", "send_tree"]

#: Files served concurrently (Go's sender runs 4 workers).
PARALLEL_FILES = 4
#: Bytes read from disk per worker-thread call (then sent as DATA packets).
READ_BLOCK = 1024 * 1024
#: Files up to this size are read in batches (one worker-thread call for all the
#: small files requested meanwhile): a worker-thread round trip costs ~0.2-5 ms under
#: load (thread wake-up and GIL hand-off), far more than reading a small file.
SMALL_FILE_MAX = 64 * 1024
#: Limits of one batch of small files.
SMALL_BATCH_FILES = 256
SMALL_BATCH_BYTES = 1024 * 1024
#: Payload of one DATA packet. Go's fsutil sends 32 KiB (:data:`.wire.DATA_CHUNK`);
#: every packet is a gRPC message inside the session's HTTP/2 tunnel, and in Python
#: the per-message cost of the two HTTP/2 layers dominated big files, so we send
#: 256 KiB (any size is fine for the receiver; the daemon accepts up to 16 MiB).
DEFAULT_CHUNK = 256 * 1024
#: STAT entries produced per worker-thread call of the walker.
WALK_BATCH = 256

_KEY_DIR_NAME = "dir-name"
_KEY_INCLUDE = "include-patterns"
_KEY_EXCLUDE = "exclude-patterns"
_KEY_FOLLOW = "followpaths"


@dataclass(slots=True)
class SendStats:
    """What one transfer did (for tests and diagnostics)."""

    name: str
    entries: int = 0
    requests: int = 0
    bytes_sent: int = 0
    options: FilterOptions | None = None
    #: why the transfer failed on our side ("" if it did not)
    error: str = ""


def _go_parse_bool(v: str) -> bool:
    return v in ("1", "t", "T", "TRUE", "true", "True")


def _md_values(md: Any, key: str) -> list[str] | None:
    """All values of a metadata key (``None`` if absent), URL-decoded if ``<key>-encoded``."""
    if md is None:
        return None
    values = [str(v) for v in md.getall(key, [])]
    if not values:
        return None
    encoded = md.getall(key + "-encoded", [])
    if encoded and _go_parse_bool(str(encoded[0])):
        values = [urllib.parse.unquote_plus(v) for v in values]
    return values


def parse_request_options(md: Any) -> tuple[str, FilterOptions]:
    """``(dir name, filter options)`` from a DiffCopy call's metadata (Go's ``decodeOpts``)."""
    names = _md_values(md, _KEY_DIR_NAME)
    name = names[0] if names else ""
    opts = FilterOptions(
        include_patterns=_md_values(md, _KEY_INCLUDE),
        exclude_patterns=_md_values(md, _KEY_EXCLUDE),
        follow_paths=_md_values(md, _KEY_FOLLOW),
    )
    return name, opts


def _next_batch(gen: Generator[Stat, None, None], n: int) -> list[Stat]:
    return list(itertools.islice(gen, n))


def _open_for_send(root: Beneath, stat: Stat) -> int | None:
    """Open a file listed earlier, failing if it is not the file we described.

    ``None`` for a socket: fsutil lists sockets as regular files (it only clears the
    socket mode bit) and, failing to open them, sends them empty.
    """
    try:
        fd = root.open(stat.path, os.O_RDONLY | os.O_NONBLOCK)  # NONBLOCK: a FIFO swapped in won't hang
    except (OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno == errno.ENXIO:
            st = root.lstat(stat.path)
            if st is not None and _stat.S_ISSOCK(st.st_mode) and stat.size == st.st_size:
                return None
        reason = "vanished" if isinstance(e, FileNotFoundError) else str(e)
        raise wire.TransferError(
            f"file {stat.path} changed since it was listed: {reason}", Status.FAILED_PRECONDITION
        ) from e
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            what = "is no longer a regular file"
        elif st.st_size != stat.size or st.st_mtime_ns != stat.mod_time:
            what = f"size/mtime {st.st_size}/{st.st_mtime_ns} != {stat.size}/{stat.mod_time}"
        else:
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise wire.TransferError(
        f"file {stat.path} changed since it was listed: {what}", Status.FAILED_PRECONDITION
    )


class _FileReader:
    """Reads one requested file in blocks; each :meth:`next_block` runs in a worker thread.

    The first call also opens and checks the file, and every read asks for one byte
    more than the remaining size, so a file that fits in a block costs a single
    thread hop and growth is noticed without an extra read.
    """

    def __init__(self, root: Beneath, stat: Stat, block: int, lock: threading.Lock) -> None:
        self._root = root
        self._stat = stat
        self._block = block
        self._lock = lock  # Beneath is not thread-safe; files are opened from several threads
        self._fd: int | None = None
        self.sent = 0
        self.done = False

    def next_block(self) -> bytes:
        st = self._stat
        if self._fd is None:
            with self._lock:
                fd = _open_for_send(self._root, st)
            if fd is None:  # a socket: empty, like Go
                self.done = True
                return b""
            self._fd = fd
        want = min(self._block, st.size - self.sent + 1)
        parts: list[bytes] = []
        got = 0
        while got < want:
            part = os.read(self._fd, want - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.sent += got
        if self.sent > st.size:
            raise wire.TransferError(
                f"file {st.path} changed since it was listed: grew past {st.size} bytes",
                Status.FAILED_PRECONDITION,
            )
        if got < want:  # end of file
            if self.sent != st.size:
                raise wire.TransferError(
                    f"file {st.path} changed since it was listed: {self.sent} bytes instead of {st.size}",
                    Status.FAILED_PRECONDITION,
                )
            self.done = True
            self.close()
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_small_files(
    root: Beneath, lock: threading.Lock, batch: list[tuple[int, Stat]], block: int
) -> list[tuple[int, bytes]]:
    """Contents of small requested files (in a worker thread): ``[(file id, data)]``."""
    out = []
    for file_id, st in batch:
        reader = _FileReader(root, st, block, lock)
        try:
            data = reader.next_block()  # the whole file and the check for growth
            while not reader.done:  # (only if a file is bigger than a block)
                data += reader.next_block()
        finally:
            reader.close()
        out.append((file_id, data))
    return out


def _one_by_one(conn: wire.PacketConn) -> Callable[[list[bytes]], Awaitable[None]]:
    async def send_many(packets: list[bytes]) -> None:
        for data in packets:
            await conn.send(data)

    return send_many


async def send_tree(
    conn: wire.PacketConn,
    root: str | os.PathLike[str],
    opts: FilterOptions | None = None,
    *,
    name: str = "",
    parallel: int = PARALLEL_FILES,
    read_block: int = READ_BLOCK,
    chunk: int = DEFAULT_CHUNK,
) -> SendStats:
    """Run the sender side of a diffcopy for the directory ``root`` over ``conn``.

    Raises :class:`~.wire.TransferError` on failure after telling the peer with an
    ERR packet (unless the peer reported the error itself).
    """
    stats = SendStats(name=name, options=opts)
    files: dict[int, Stat] = {}
    root_s = os.fspath(root)
    try:
        # Resolving the root may touch the disk; like every file operation here, do
        # it in a worker thread.
        beneath = await anyio.to_thread.run_sync(lambda: Beneath(os.path.realpath(root_s)))
    except OSError as e:
        err = wire.TransferError(f"cannot open {root_s}: {e.strerror}", Status.NOT_FOUND)
        await conn.send(wire.encode_err(err.message))
        raise err from e
    req_send, req_recv = anyio.create_memory_object_stream[tuple[int, Stat]](128)
    # Packets sent back to back share one write where the connection supports it.
    send_many: Callable[[list[bytes]], Awaitable[None]] = getattr(conn, "send_many", None) or (
        _one_by_one(conn)
    )
    failure = wire.FirstFailure()

    walk_done = anyio.Event()

    async def walker() -> None:
        gen = walk(root_s, opts)
        index = 0
        try:
            while True:
                try:
                    batch = await anyio.to_thread.run_sync(_next_batch, gen, WALK_BATCH)
                except (WalkError, ValueError) as e:
                    raise wire.TransferError(str(e)) from e
                if not batch:
                    break
                # registered before they are sent: a REQ may come back at once
                for st in batch:
                    if gomode.is_regular(st.mode):
                        files[index] = st
                    index += 1
                await send_many([wire.encode_stat(st) for st in batch])
            stats.entries = index
            await conn.send(wire.END_OF_WALK)
            walk_done.set()
        finally:
            gen.close()

    beneath_lock = threading.Lock()

    async def send_file(file_id: int, st: Stat) -> None:
        reader = _FileReader(beneath, st, read_block, beneath_lock)
        try:
            while not reader.done:
                block = await anyio.to_thread.run_sync(reader.next_block)
                view = memoryview(block)
                packets = [
                    wire.encode_data(file_id, view[i : i + chunk]) for i in range(0, len(block), chunk)
                ]
                if reader.done:
                    packets.append(wire.encode_data(file_id, b""))  # the end of the file
                await send_many(packets)
        finally:
            reader.close()
        stats.bytes_sent += reader.sent

    workers_left = parallel + 1  # + small_files
    workers_done = anyio.Event()

    # Small files are read in batches by one more worker: whatever was requested while
    # the previous batch was read, in one worker-thread call (a thread hop per file
    # cost more than the file; reading them on the event loop kept it from framing and
    # sending while the disk was busy).
    small: collections.deque[tuple[int, Stat]] = collections.deque()
    small_queued = asyncio.Event()
    small_closed = False

    async def small_files() -> None:
        nonlocal workers_left
        try:
            while True:
                if not small:
                    if small_closed:
                        break
                    small_queued.clear()
                    await small_queued.wait()
                    continue
                batch: list[tuple[int, Stat]] = []
                size = 0
                while small and len(batch) < SMALL_BATCH_FILES and size < SMALL_BATCH_BYTES:
                    batch.append(small.popleft())
                    size += batch[-1][1].size
                contents = await anyio.to_thread.run_sync(
                    _read_small_files, beneath, beneath_lock, batch, read_block
                )
                packets: list[bytes] = []
                for file_id, data in contents:
                    view = memoryview(data)
                    packets += [
                        wire.encode_data(file_id, view[i : i + chunk]) for i in range(0, len(data), chunk)
                    ]
                    packets.append(wire.encode_data(file_id, b""))  # the end of the file
                    stats.bytes_sent += len(data)
                await send_many(packets)
        finally:
            workers_left -= 1
            if workers_left == 0:
                workers_done.set()

    async def worker(requests: MemoryObjectReceiveStream[tuple[int, Stat]]) -> None:
        nonlocal workers_left
        try:
            async with requests:
                while True:
                    # Queued requests are taken without a scheduling checkpoint, so
                    # one worker answers a run of small files in one go and their
                    # packets share the session's BytesMessages.
                    try:
                        file_id, st = requests.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            file_id, st = await requests.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                    await send_file(file_id, st)
        finally:
            workers_left -= 1
            if workers_left == 0:
                workers_done.set()

    async def receiver() -> None:
        nonlocal small_closed
        async with req_send:
            while True:
                data = await conn.recv()
                if data is None:
                    raise wire.TransferError("receiver ended the stream before FIN", send_err=False)
                p = wire.decode(data)
                if p.type == wire.PT.PACKET_REQ:
                    st = files.pop(p.id, None)
                    if st is None:
                        raise wire.TransferError(f"invalid file id {p.id}", Status.INVALID_ARGUMENT)
                    stats.requests += 1
                    if st.size <= SMALL_FILE_MAX:
                        small.append((p.id, st))
                        small_queued.set()
                    else:
                        await req_send.send((p.id, st))
                elif p.type == wire.PT.PACKET_FIN:
                    break
                elif p.type == wire.PT.PACKET_ERR:
                    msg = bytes(p.data).decode("utf-8", "replace")
                    raise wire.TransferError(f"error from receiver: {msg}", send_err=False)
                # STAT/DATA from a receiver mean nothing to a sender; Go ignores them too.
        # req_send is closed: the workers finish the files in flight and stop. A
        # correct receiver sends FIN only after the end of the walk; if one doesn't,
        # finish the walk first so the STAT stream stays complete.
        small_closed = True
        small_queued.set()
        await workers_done.wait()
        await walk_done.wait()
        await conn.send(wire.FIN)

    try:
        # All work runs in child tasks: the first failure is recorded and cancels the
        # others, and the host only waits (nothing raises inside the task group).
        async with anyio.create_task_group() as tg:
            tg.start_soon(failure.wrap(tg.cancel_scope, walker))
            for _ in range(parallel):
                tg.start_soon(failure.wrap(tg.cancel_scope, worker, req_recv.clone()))
            tg.start_soon(failure.wrap(tg.cancel_scope, small_files))
            req_recv.close()  # the workers hold clones; they end when req_send closes
            tg.start_soon(failure.wrap(tg.cancel_scope, receiver))
        failure.raise_if_failed()
    except wire.TransferError as e:
        if e.send_err:
            # The stream may be gone already; the error raised below is what matters.
            with contextlib.suppress(Exception):
                await conn.send(wire.encode_err(e.message))
        raise
    finally:
        beneath.close()
    return stats
