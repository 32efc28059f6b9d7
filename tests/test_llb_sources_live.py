"""git, http and image sources, definition import, lazy States and constraints against a real buildkitd.

Everything the daemon fetches is served on loopback by the test itself: an
``http.server`` thread for http sources and for git (smart HTTP through
``git http-backend``: BuildKit fetches with ``--depth=1``, which dumb HTTP cannot
serve), and the ``buildkit_registry`` fixture with the ``buildkit_busybox_image`` pushed by Go's
``buildctl``.  ``oci_layout`` is not here: solving it needs the session's
content-store attachable, which the client does not serve yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb
from llblib_async.testing import BuildkitDaemon, Registry
from llblib_async.testing.images import PushedImage

pytestmark = pytest.mark.asyncio(loop_scope="session")

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "llblib",
    "GIT_AUTHOR_EMAIL": "llblib@example.com",
    "GIT_COMMITTER_NAME": "llblib",
    "GIT_COMMITTER_EMAIL": "llblib@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


# --- a loopback HTTP server: static files and git smart HTTP -----------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; requests are recorded in server.requests

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        if self.path.startswith("/git/"):
            self._git()
            return
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        if self.path.startswith("/git/"):
            self._git()
            return
        self.send_error(405)

    def _git(self) -> None:
        """Run ``git http-backend`` as a CGI for one request (git's smart HTTP protocol)."""
        path, _, query = self.path.removeprefix("/git").partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            **_GIT_ENV,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: Mapping[str, bytes], git_root: Path | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(files)
        self.git_root = git_root
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def serve(files: Mapping[str, bytes] | None = None, git_root: Path | None = None) -> Iterator[_Server]:
    """Serve ``files`` (path → bytes) and the bare repositories under ``git_root`` at ``/git/``."""
    server = _Server(files or {}, git_root)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


# --- helpers -------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: kind, permission bits, content (or link target)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(p).encode())
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


async def _export(address: str, state: llb.State | llb.Definition, dest: Path) -> Path:
    async with llblib_async.connect(address) as client:
        await client.solve(state, exports=[llblib_async.LocalExport(dest)])
    return dest


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        **_GIT_ENV,
        "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z",
        "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z",
    }
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.strip()


class _Repo:
    """A git repository with history, served as ``<url>/git/repo.git``."""

    def __init__(self, tmp: Path) -> None:
        work = tmp / "work"
        work.mkdir(parents=True)
        _git(work, "init", "-q", "-b", "main")
        (work / "README").write_text("v1\n")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "one")
        _git(work, "tag", "v1")
        self.v1 = _git(work, "rev-parse", "HEAD")
        (work / "README").write_text("v2\n")
        (work / "sub" / "dir").mkdir(parents=True)
        (work / "sub" / "dir" / "file.txt").write_text("in a subdir\n")
        (work / "tool.sh").write_text("#!/bin/sh\necho hi\n")
        (work / "tool.sh").chmod(0o755)
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "two")
        self.main = _git(work, "rev-parse", "HEAD")
        _git(work, "checkout", "-q", "-b", "feature")
        (work / "FEATURE").write_text("feature branch\n")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "three")
        self.feature = _git(work, "rev-parse", "HEAD")
        _git(work, "checkout", "-q", "main")
        self.root = tmp / "served"
        self.root.mkdir()
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(work), str(self.root / "repo.git")],
            env={**os.environ, **_GIT_ENV},
            check=True,
            timeout=60,
        )
        _git(self.root / "repo.git", "update-server-info")


# --- http -----------------------------------------------------------------------------------------------


async def test_http_source_checksum_filename_and_chmod(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    tool = b"#!/bin/sh\necho " + os.urandom(8).hex().encode() + b"\n"
    data = os.urandom(4096)
    files = {"/dl/tool-1.0": tool, "/data.bin": data}
    with serve(files) as server:
        state = llb.scratch().file(
            llb.copy(
                llb.http(
                    f"{server.url}/dl/tool-1.0",
                    checksum="sha256:" + hashlib.sha256(tool).hexdigest(),
                    filename="tool",
                    chmod=0o751,
                ),
                "/tool",
                "/bin/tool",
                create_dest_path=True,
            ).copy(llb.http(f"{server.url}/data.bin"), "/", "/data/")
        )
        out = await _export(buildkit_daemon.address, state, tmp_path / "out")
        assert ("GET", "/dl/tool-1.0") in server.requests
    tree = _tree(out)
    assert tree["bin/tool"] == ("file", 0o751, tool)
    # without filename the file is named after the URL's last path element, mode 0600
    assert tree["data/data.bin"] == ("file", 0o600, data)


async def test_http_source_checksum_mismatch_fails_the_build(buildkit_daemon: BuildkitDaemon) -> None:
    payload = os.urandom(64)
    wrong = "sha256:" + hashlib.sha256(payload + b"x").hexdigest()
    with serve({"/f": payload}) as server:
        state = llb.scratch().copy(llb.http(f"{server.url}/f", checksum=wrong), "/f", "/f")
        async with llblib_async.connect(buildkit_daemon.address) as client:
            with pytest.raises(llblib_async.SolveError) as info:
                await client.solve(state)
    assert "digest mismatch" in str(info.value)
    assert wrong in str(info.value)


# --- git ------------------------------------------------------------------------------------------------


async def test_git_refs_tags_commits_subdir_and_keep_git_dir(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    repo = _Repo(tmp_path / "repo")
    with serve(git_root=repo.root) as server:
        url = f"{server.url}/git/repo.git"
        checkouts = {
            "head": llb.git(url),
            "tag": llb.git(url, "v1"),
            "commit": llb.git(url, repo.v1),
            "branch": llb.git(url, "feature"),
            "subdir": llb.git(url, "main", subdir="sub/dir"),
            "fragment": llb.git(url, "main:sub"),
            "kept": llb.git(url, "feature", keep_git_dir=True),
        }
        action = None
        for name, src in checkouts.items():
            step = llb.copy(src, "/", f"/{name}/", create_dest_path=True)
            action = step if action is None else action.copy(src, "/", f"/{name}/", create_dest_path=True)
        assert action is not None
        out = await _export(buildkit_daemon.address, llb.scratch().file(action), tmp_path / "out")
        assert any(path.startswith("/git/repo.git/git-upload-pack") for _, path in server.requests)

    assert (out / "head" / "README").read_text() == "v2\n"
    assert stat.S_IMODE((out / "head" / "tool.sh").stat().st_mode) == 0o755
    assert not (out / "head" / ".git").exists()
    assert not (out / "head" / "FEATURE").exists()
    for old in ("tag", "commit"):
        assert sorted(p.name for p in (out / old).iterdir()) == ["README"]
        assert (out / old / "README").read_text() == "v1\n"
    assert (out / "branch" / "FEATURE").read_text() == "feature branch\n"
    assert sorted(p.name for p in (out / "subdir").iterdir()) == ["file.txt"]
    assert (out / "fragment" / "dir" / "file.txt").read_text() == "in a subdir\n"
    assert (out / "kept" / ".git").is_dir()
    assert _git(out / "kept", "rev-parse", "HEAD") == repo.feature


async def test_git_checksum_mismatch_fails_the_build(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    repo = _Repo(tmp_path / "repo")
    with serve(git_root=repo.root) as server:
        state = llb.scratch().copy(llb.git(f"{server.url}/git/repo.git", "main", checksum=repo.v1), "/", "/")
        async with llblib_async.connect(buildkit_daemon.address) as client:
            with pytest.raises(llblib_async.SolveError) as info:
                await client.solve(state)
    assert f"expected checksum to match {repo.v1}" in str(info.value)


# --- images from the loopback registry ----------------------------------------------------------------


async def test_image_pulled_from_the_registry_by_tag_and_by_digest(
    buildkit_fresh_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_busybox_rootfs: Path,
    tmp_path: Path,
) -> None:
    # A fresh daemon has nothing cached: the image really comes from the registry.
    expected = (buildkit_busybox_rootfs / "bin" / "busybox").read_bytes()
    tag, digest = buildkit_busybox_image.ref.rsplit(":", 1)[1], buildkit_busybox_image.digest
    state = llb.scratch().file(
        llb.copy(
            llb.image(buildkit_busybox_image.ref), "/bin/busybox", "/by-tag/busybox", create_dest_path=True
        )
        .copy(
            llb.image(buildkit_busybox_image.pinned_ref),
            "/etc/passwd",
            "/by-digest/passwd",
            create_dest_path=True,
        )
        .copy(
            llb.image(
                buildkit_busybox_image.ref, digest=digest, resolve_mode="pull", layer_limit=1, checksum=digest
            ),
            "/bin/sh",
            "/pinned/sh",
            create_dest_path=True,
        )
    )
    out = await _export(buildkit_fresh_daemon.address, state, tmp_path / "out")
    assert tag == "latest"
    assert (out / "by-tag" / "busybox").read_bytes() == expected
    assert (out / "by-digest" / "passwd").read_text() == (
        buildkit_busybox_rootfs / "etc" / "passwd"
    ).read_text()
    # the rootfs has bin/sh -> busybox; copy follows nothing, so the link itself is copied
    assert os.readlink(out / "pinned" / "sh") == "busybox"


async def test_image_checksum_mismatch_fails(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage
) -> None:
    wrong = "sha256:" + "0" * 64
    state = llb.scratch().copy(llb.image(buildkit_busybox_image.ref, checksum=wrong), "/etc/passwd", "/p")
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.SolveError) as info:
            await client.solve(state)
    assert "checksum" in str(info.value)
    assert buildkit_busybox_image.digest in str(info.value)


async def test_image_blob_fetches_the_config_blob(
    buildkit_daemon: BuildkitDaemon, buildkit_busybox_image: PushedImage, tmp_path: Path
) -> None:
    blob = llb.image_blob(
        f"{buildkit_busybox_image.repository}@{buildkit_busybox_image.config_digest}",
        filename="config.json",
        chmod=0o644,
    )
    out = await _export(buildkit_daemon.address, blob, tmp_path / "out")
    raw = (out / "config.json").read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == buildkit_busybox_image.config_digest
    config = json.loads(raw)
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o644


async def test_lazy_state_pins_the_tag_to_the_registry_digest_at_marshal_time(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_image: PushedImage,
    buildkit_registry: Registry,
    tmp_path: Path,
) -> None:
    calls: list[llb.LazyContext] = []

    async def pin(ctx: llb.LazyContext) -> llb.State:
        # Real I/O at marshal time: ask the registry which manifest the tag points at.
        calls.append(ctx)
        name = buildkit_busybox_image.repository.split("/", 1)[1]

        def head() -> str:
            request = urllib.request.Request(
                f"http://{buildkit_registry.host}/v2/{name}/manifests/{buildkit_busybox_image.tag}",
                method="HEAD",
                headers={
                    "Accept": ", ".join(
                        [
                            "application/vnd.oci.image.index.v1+json",
                            "application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json",
                        ]
                    )
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.headers["Docker-Content-Digest"])

        return llb.image(
            buildkit_busybox_image.ref, digest=await asyncio.to_thread(head), platform=ctx.platform
        )

    pinned = llb.lazy(pin)
    state = llb.scratch().copy(pinned, "/etc/group", "/group")
    with pytest.raises(llb.UnresolvedLazyStateError):
        llb.marshal(state)
    definition = await llb.marshal_async(state)
    assert len(calls) == 1
    image_op = next(op for op in definition.ops if b"docker-image://" in op)
    assert f"{buildkit_busybox_image.ref}@{buildkit_busybox_image.digest}".encode() in image_op
    out = await _export(buildkit_daemon.address, definition, tmp_path / "out")
    assert (out / "group").read_text().startswith("root:x:0:")


# --- definition import ------------------------------------------------------------------------------


async def test_state_built_on_an_imported_definition_solves(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from the context\n")
    base = llb.scratch().mkdir("/app").copy(llb.local(ctx), "/", "/app/")
    # Through bytes (locals are lost) and through the Definition object (locals kept).
    from_bytes = llb.from_definition(llb.marshal(llb.scratch().mkfile("/a", "A")).to_bytes())
    imported = llb.from_definition(llb.marshal(base))
    state = imported.mkfile("/app/extra", "added on top\n").copy(from_bytes, "/a", "/a")
    definition = llb.marshal(state)
    assert definition.locals == llb.marshal(base).locals
    out = await _export(buildkit_daemon.address, state, tmp_path / "out")
    assert (out / "app" / "hello.txt").read_text() == "hello from the context\n"
    assert (out / "app" / "extra").read_text() == "added on top\n"
    assert (out / "a").read_text() == "A"


# --- constraints ------------------------------------------------------------------------------------------


async def test_constraints_reach_the_daemon(buildkit_daemon: BuildkitDaemon, tmp_path: Path) -> None:
    # BuildKit v0.34 schedules everything on its default worker and does not evaluate worker
    # filters, but they are part of the op bytes: the daemon's vertex digest must include them.
    require = llb.Constraints(require=["labels.no-such-label==1"])
    group = llb.ProgressGroup("pg-live", "grouped steps")
    made_x = llb.scratch().mkdir("/x", name="make x", constraints=require)
    state = made_x.mkfile(
        "/x/f",
        os.urandom(8).hex(),
        constraints=llb.Constraints.of(progress_group=group, export_cache=False, ignore_cache=True),
    )
    with_filter = llb.digest(made_x)
    assert with_filter != llb.digest(llb.scratch().mkdir("/x", name="make x"))
    recorder = llblib_async.RecordingProgress()
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(state, exports=[llblib_async.LocalExport(tmp_path / "out")], progress=recorder)
    vertices = recorder.vertices
    assert vertices[with_filter].name == "make x"
    assert llb.digest(state) in vertices
    assert all(v.completed and not v.error for v in vertices.values())
    assert (tmp_path / "out" / "x" / "f").is_file()
