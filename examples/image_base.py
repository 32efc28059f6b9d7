"""An image built on ``llb.image(ref)`` keeps its base's config, as a Dockerfile ``FROM`` does.

``llb.image(ref)`` needs no registry to build the graph; when the request exports the State
as an image, the base's config (env, user, working dir, entrypoint, cmd, labels, history) is
resolved through the daemon and the State's own config is merged on top of it.
``inherit_config=False`` opts out. Runs do not see the base's env at build time: for
that, use ``await session.image(ref)``, which resolves the config first and applies it.

Environment: ``BUILDKIT_HOST`` (the daemon), ``BASE_IMAGE`` (an image with a shell, e.g. a
busybox in your registry), ``REGISTRY`` (optional: ``host:port`` of a registry to push to,
plain HTTP allowed for loopback registries).

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=127.0.0.1:5000/busybox \\
        python examples/image_base.py
"""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import llblib_async
from llblib_async import llb
from llblib_async.llb import config_ops as co


def image_config_in(tarball: Path) -> dict[str, Any]:
    """The config of the single image in an OCI layout tarball."""
    with tarfile.open(tarball) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile("blobs/" + digest.replace(":", "/"))
            assert member is not None
            return json.load(member)

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        manifest = blob(index["manifests"][0]["digest"])
        config: dict[str, Any] = blob(manifest["config"]["digest"])
        return config


async def main() -> None:
    base = os.environ.get("BASE_IMAGE", "docker.io/library/busybox:latest")
    registry = os.environ.get("REGISTRY")
    app = (
        llb.image(base)
        .run("echo built on the base > /hello.txt", shell=True)
        .root.apply(co.add_default_env("GREETING", "hello"), co.cmd("cat", "/hello.txt"))
    )
    opted_out = llb.image(base, inherit_config=False).apply(co.cmd("cat", "/hello.txt"))
    with tempfile.TemporaryDirectory() as tmp:
        async with llblib_async.connect() as client, llblib_async.Solver().session(client) as session:
            inherited, plain = Path(tmp) / "app.tar", Path(tmp) / "plain.tar"
            await session.do(llblib_async.Request.of(app, exports=[llblib_async.OCIExport(inherited)]))
            await session.do(llblib_async.Request.of(opted_out, exports=[llblib_async.OCIExport(plain)]))
            if registry:
                ref = f"{registry}/examples/image-base:latest"
                await session.do(
                    llblib_async.Request.of(
                        app, exports=[llblib_async.ImageExport(ref, push=True, insecure=True)]
                    )
                )
                print("pushed", ref)
            # The session resolved the base's config once, for both image exports that needed it.
            config = image_config_in(inherited)
            print("inherited env:", config["config"]["Env"])
            print("inherited cmd:", config["config"]["Cmd"])
            print("history:", len(config["history"]), "records, the base's first")
            print("opted-out config:", json.dumps(image_config_in(plain)["config"]))

            # FROM semantics for the runs too: resolve the config first.
            resolved = await session.image(base)
            print("runs on session.image see PATH =", resolved.exec_meta.get_env("PATH"))


if __name__ == "__main__":
    asyncio.run(main())
