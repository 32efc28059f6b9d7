"""Many downloads at once on one session, and what their results say.

Sixteen requests each build a small filesystem and download it -- half into
directories (``LocalExport``), half as tar files (``TarExport``) -- all at the same
time over one session; one more exports an OCI image tarball and prints the typed
fields of its result (digest, descriptor, names). Everything lands in a temporary
directory, which is removed at the end.

The daemon: ``$BUILDKIT_HOST`` (or the default socket). Runs offline; no base image.

    python examples/concurrent_downloads.py
"""

from __future__ import annotations

import asyncio
import tarfile
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import llb


async def main() -> None:
    solver = llblib_async.Solver()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        requests = []
        for i in range(16):
            state = llb.scratch().file(llb.mkdir("/data", 0o755).mkfile("/data/n.txt", f"file {i}\n"))
            export: llblib_async.LocalExport | llblib_async.TarExport
            if i % 2 == 0:
                export = llblib_async.LocalExport(out / f"dir{i}")
            else:
                export = llblib_async.TarExport(out / f"file{i}.tar")
            requests.append(solver.build(state, label=f"download {i}", exports=[export]))
        image = llb.scratch().with_platform(llb.default_platform()).mkfile("/hello", "hello\n")
        oci = solver.build(image, exports=[llblib_async.OCIExport(out / "image.tar", name="example/hello:1")])

        async with llblib_async.connect() as client, solver.session(client) as session:
            results = await asyncio.gather(*(session.do(r) for r in requests))
            image_result = await session.do(oci)
            print(f"16 downloads done; {session.export_sessions} ran in private export sessions")

        for i, result in enumerate(results):
            if i % 2 == 0:
                text = (out / f"dir{i}" / "data" / "n.txt").read_text()
            else:
                with tarfile.open(out / f"file{i}.tar") as tar:
                    member = tar.extractfile("data/n.txt")
                    assert member is not None
                    text = member.read().decode()
            assert text == f"file {i}\n", (i, text)
            assert result.outputs
            assert result.image_digest is None
        print("every download holds its own file")

        descriptor = image_result.descriptor
        assert descriptor is not None
        print(f"image digest:  {image_result.image_digest}")
        print(f"descriptor:    {descriptor.media_type}, {descriptor.size} bytes, {descriptor.platform}")
        print(f"names:         {', '.join(image_result.image_names)}")
        print(f"written to:    {', '.join(p.name for p in image_result.outputs)}")


if __name__ == "__main__":
    asyncio.run(main())
