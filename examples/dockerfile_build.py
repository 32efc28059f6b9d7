"""Build a Dockerfile with llblib-async: a multi-stage build, a build arg, a named context,
an error that points at its line, and the image config that comes with the result.

Environment: ``BUILDKIT_HOST`` (the daemon), ``BASE_IMAGE`` (an image with a shell, e.g. a
busybox in your registry), ``REGISTRY`` (optional: ``host:port`` of a registry to push to,
plain HTTP allowed for loopback registries).

    BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock BASE_IMAGE=127.0.0.1:5000/busybox \\
        python examples/dockerfile_build.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import llb
from llblib_async.llb import config_ops as co

DOCKERFILE = """\
FROM {base} AS build
ARG GREETING=hello
RUN --mount=type=cache,target=/cache echo "$GREETING from a Dockerfile" > /greeting
COPY --from=notes /notes.txt /notes.txt

FROM {base}
COPY --from=build /greeting /notes.txt /app/
COPY . /app/context/
WORKDIR /app
CMD ["cat", "/app/greeting"]
"""


async def main() -> None:
    base = os.environ.get("BASE_IMAGE", "docker.io/library/busybox:latest")
    registry = os.environ.get("REGISTRY")
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        (context / "README").write_text("the build context\n")
        (context / "build.log").write_text("left out by .dockerignore\n")
        (context / ".dockerignore").write_text("*.log\n")
        image = llb.dockerfile(
            DOCKERFILE.format(base=base),
            context=context,  # a directory: its .dockerignore is honoured
            build_args={"GREETING": "hi"},
            named_contexts={"notes": llb.scratch().mkfile("/notes.txt", "a State as a named context\n")},
        )
        out = Path(tmp) / "out"
        async with llblib_async.connect() as client, llblib_async.Solver().session(client) as session:
            # Ask the frontend about the Dockerfile without building it.
            outline = await llblib_async.outline(session, image)
            print("build args:", {a.name: a.value for a in outline.args})

            # Build it; the result is a State like any other: export it, build on it.
            await session.do(llblib_async.Request.of(image, exports=[llblib_async.LocalExport(out)]))
            print((out / "app" / "greeting").read_text().strip())
            print("context files:", sorted(p.name for p in (out / "app" / "context").iterdir()))

            # The result with its image config, to add to it like to any image.
            built = await session.resolve(image)
            assert built.image_config is not None
            print("cmd from the Dockerfile:", list(built.image_config.config.cmd))
            app = built.apply(co.add_label("org.example.example", "dockerfile_build"), co.cmd("ls", "/app"))
            if registry:
                ref = f"{registry}/examples/dockerfile-build:latest"
                await session.do(
                    llblib_async.Request.of(
                        app, exports=[llblib_async.ImageExport(ref, push=True, insecure=True)]
                    )
                )
                print("pushed", ref)

            # A failing step: the exception shows the Dockerfile's line, like `docker build`.
            broken = llb.dockerfile(f"FROM {base}\nRUN echo building\nRUN exit 3\n")
            try:
                await session.do(llblib_async.Request.of(broken, evaluate=True))
            except llblib_async.SolveError as err:
                print("failed as expected:")
                print(err)
                print("the failing line:", err.sources[0].line)


if __name__ == "__main__":
    asyncio.run(main())
