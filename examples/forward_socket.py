"""Forward a host service into a build: a build step talks to a server running on this host.

The program starts a small key-value service of its own (an asyncio TCP server on
``127.0.0.1``, one ``GET key`` request per line, one line back for each), forwards it into
a build step with ``SocketForwards({"kv": "tcp://127.0.0.1:PORT"})``, and the step mounts
it with ``llb.ssh_mount("/run/kv.sock", id="kv")``: a unix socket in the container whose
every connection reaches a new connection to the service, made by this program (so it
works with a remote daemon too).  The step writes the answers to ``/out/answers.txt``,
which is exported with ``LocalExport`` and printed.

Busybox has no unix-socket client, so the program compiles a tiny static client
(``sockcat``: stdin to the socket, then socket to stdout; Go standard library only, its
source is below) with the Go toolchain (``go`` on ``PATH`` or in ``/usr/local/go/bin``,
as on every machine set up for this project; ``CGO_ENABLED=0``, ``GOTOOLCHAIN=local``: no
download) and sends it into the build as a local context, mounted read-only at ``/tools``
next to the base image.  Everything is built and exported in a temporary directory that
is removed at the end; the service is closed before the program exits.

Environment: ``BUILDKIT_HOST`` (the daemon), ``BASE_IMAGE`` (an image with ``/bin/sh``,
default ``busybox:1.36``).

    BASE_IMAGE=127.0.0.1:5000/busybox:latest python examples/forward_socket.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import llblib_async
from llblib_async import llb

SOCKCAT_GO = r"""
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, "sockcat:", err)
	os.Exit(1)
}

// sockcat SOCKET: copy stdin to the unix socket, half-close it, copy the replies to stdout.
func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sockcat SOCKET")
		os.Exit(2)
	}
	conn, err := net.Dial("unix", os.Args[1])
	if err != nil {
		die(err)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, os.Stdin)
		if err == nil {
			err = conn.(*net.UnixConn).CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(os.Stdout, conn); err != nil {
		die(err)
	}
	if err := <-sent; err != nil {
		die(err)
	}
}
"""

STORE = {
    "greeting": "hello from the host",
    "answer": "42",
    "served-by": f"pid {os.getpid()} on the host",
}


async def serve_kv(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection: answer each ``GET key`` line until the client half-closes."""
    try:
        async for raw in reader:
            verb, _, key = raw.decode().strip().partition(" ")
            if verb != "GET":
                reply = f"error: unknown command {verb!r}"
            else:
                reply = f"{key}={STORE[key]}" if key in STORE else f"{key}: not found"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def build_sockcat(dest: Path) -> Path:
    """Compile ``SOCKCAT_GO`` into a static ``dest/sockcat`` (the directory sent to the build)."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if go is None:
        raise SystemExit("this example compiles a small client with Go: install the Go toolchain (`go`)")
    src = dest / "src"
    src.mkdir()
    (src / "main.go").write_text(SOCKCAT_GO)
    out = dest / "tools"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GO111MODULE": "on"}
    proc = await asyncio.create_subprocess_exec(
        go,
        "build",
        "-trimpath",
        "-ldflags=-s -w",
        "-o",
        str(out / "sockcat"),
        "main.go",
        cwd=src,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"building sockcat failed:\n{output.decode(errors='replace')}")
    return out


async def main() -> int:
    base = llb.image(os.environ.get("BASE_IMAGE", "busybox:1.36"))
    with tempfile.TemporaryDirectory(prefix="llblib-forward-socket-") as tmp:
        tools = await build_sockcat(Path(tmp))
        server = await asyncio.start_server(serve_kv, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            service = llblib_async.SocketForwards({"kv": f"tcp://127.0.0.1:{port}"})
            step = base.run(
                "mkdir -p /out && printf 'GET greeting\\nGET answer\\nGET served-by\\nGET nothing\\n'"
                " | /tools/sockcat /run/kv.sock > /out/answers.txt",
                shell=True,
                mounts=[
                    llb.bind("/tools", llb.local(tools), readonly=True),
                    llb.ssh_mount("/run/kv.sock", id="kv"),
                ],
                name="ask the host's key-value service",
                ignore_cache=True,  # a cached result would not ask the service again
            )
            out = Path(tmp) / "out"
            async with llblib_async.connect() as client, llblib_async.open_progress() as progress:
                await client.solve(
                    llb.scratch().copy(step.root, "/out/answers.txt", "/answers.txt"),
                    exports=[llblib_async.LocalExport(out)],
                    attachables=[service],
                    progress=progress,
                )
        finally:
            server.close()
            await server.wait_closed()
        print(f"the build step connected {service.connections.get('kv', 0)} time(s); it got:")
        print((out / "answers.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
