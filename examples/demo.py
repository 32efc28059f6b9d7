"""llblib-async demo: a real build, end to end.

Builds ``scratch`` + a file written by a file op + this example's ``demo-context``
directory uploaded through the session, solves it on BuildKit with plain progress,
exports the result into a local directory and prints what arrived.

Daemon: ``$BUILDKIT_HOST`` or the default buildkitd socket when there is one;
otherwise the demo builds (once, cached) and starts a private buildkitd as the
test fixtures do, which needs root, ``go`` and ``runc``.

    python examples/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import llblib_async
from llblib_async import llb

CONTEXT = Path(__file__).resolve().parent / "demo-context"
DEFAULT_SOCKET = Path("/run/buildkit/buildkitd.sock")


@contextlib.contextmanager
def buildkit_address() -> Iterator[str | None]:
    """Use a configured daemon, or start a private one for the demo's lifetime."""
    if os.environ.get("BUILDKIT_HOST") or DEFAULT_SOCKET.exists():
        yield None  # connect() resolves the configured daemon itself
        return
    from llblib_async.testing import BuildkitDaemon

    print("no BuildKit configured: starting a private buildkitd (built with Go and cached on first use)")
    with BuildkitDaemon.start() as daemon:
        yield daemon.address


def describe(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        kind = "dir " if stat.S_ISDIR(st.st_mode) else "file"
        size = "" if stat.S_ISDIR(st.st_mode) else f" {st.st_size:5d} B"
        yield f"  {kind} {stat.filemode(st.st_mode)}{size}  /{path.relative_to(root)}"


async def build(address: str | None, out: Path) -> None:
    state = (
        llb.scratch()
        .mkdir("/etc")
        .mkfile("/etc/motd", "built by llblib-async\n", mode=0o644)
        .copy(llb.local(CONTEXT, name="demo-context"), "/", "/app/")
    )
    async with llblib_async.connect(address) as client:
        info = await client.info()
        workers = await client.list_workers()
        print(f"connected to {client.address}: BuildKit {info.version or '(embedded in Docker)'}, "
              f"workers: {', '.join(w.id for w in workers)}")  # fmt: skip
        printer = llblib_async.PlainProgress(sys.stdout)
        result = await client.solve(state, exports=[llblib_async.LocalExport(out)], progress=printer)
    print(f"\nbuild {result.ref} exported to {out}:")
    for line in describe(out):
        print(line)
    print(f"\n/etc/motd: {(out / 'etc/motd').read_text().strip()!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="export into this directory and keep it")
    args = parser.parse_args()
    with buildkit_address() as address:
        if args.keep:
            asyncio.run(build(address, args.keep))
        else:
            with tempfile.TemporaryDirectory(prefix="llblib-demo-") as tmp:
                asyncio.run(build(address, Path(tmp) / "out"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
