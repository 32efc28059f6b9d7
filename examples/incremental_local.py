"""A local build that sends only what changed: one session, two builds of a changing directory.

``Solver.local`` derives the source from the directory's content, so within one session
BuildKit asks again only for the files that changed, and the session sends just those.
This example makes a 2 MB source tree, builds it (copy into an image, export to a
local directory), changes one file, builds again in the same session, and prints how
many bytes each build uploaded (from the progress of each request).

Daemon: ``$BUILDKIT_HOST`` (or the default socket).  No base image needed.

    python examples/incremental_local.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import llb


def uploaded(model: llblib_async.ProgressModel, label: str) -> int:
    """Bytes of the local directory sent for request ``label`` (its ``transferring`` rows)."""
    total = 0
    for digest in model.requests[label].vertices:
        for row in model.vertices[digest].subprogress.values():
            if row.id.startswith("transferring "):
                total += row.current
    return total


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="llblib-incremental-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        for i in range(200):
            (src / f"module{i:03}.txt").write_bytes(bytes([65 + i % 26]) * 10_000)
        solver = llblib_async.Solver()
        model = llblib_async.ProgressModel()
        plain = llblib_async.PlainProgress(sys.stdout)
        progress = llblib_async.fan_out([model, plain])
        async with llblib_async.connect() as client, solver.session(client, progress=progress) as session:
            for label in ("first", "second"):
                if label == "second":
                    (src / "module007.txt").write_text("changed\n")
                state = llb.scratch().copy(solver.local(src, name="src"), "/", "/app/")
                await session.do(solver.build(state, label=label, exports=[llblib_async.LocalExport(out)]))
        first, second = uploaded(model, "first"), uploaded(model, "second")
        print(f"\nfirst build uploaded {first:,} bytes; after changing one file: {second:,} bytes")
        assert (out / "app" / "module007.txt").read_text() == "changed\n"
        if not second < first / 10:
            print("error: the second build sent more than the changed file", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
