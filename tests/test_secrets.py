"""Secrets attachable: redaction, limits and errors offline; secret mounts against a real buildkitd.

The live tests mount secrets from a file, an environment variable and bytes into an
exec (as files and as env vars) and export what the command saw. The leak checks
assert that *the library* never adds a secret value to what it produces: reprs,
log records, exceptions (unknown id, missing variable, file too big) and the
progress/errors of a failing build whose command does not print the value itself.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import llblib_async
from llblib_async import llb
from llblib_async._pb.moby.buildkit.secrets import v1 as secrets_pb
from llblib_async.attachables import MAX_SECRET_SIZE, Secret, Secrets
from llblib_async.errors import SecretError
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.attachable_server import serve_attachable

pytestmark = pytest.mark.asyncio(loop_scope="session")

VALUE = "s3cr3t-" + uuid.uuid4().hex  # unique: finding it anywhere means a leak
ENV_VALUE = "env-" + uuid.uuid4().hex
FILE_VALUE = "file-" + uuid.uuid4().hex


def _rootfs(busybox_rootfs: Path) -> llb.State:
    return llb.scratch().copy(llb.local(busybox_rootfs), "/", "/")


@asynccontextmanager
async def _serve(tmp_path: Path, secrets: Secrets) -> AsyncIterator[secrets_pb.SecretsStub]:
    """The attachable on a plain grpclib server; a stub plays the daemon."""
    async with serve_attachable(secrets, tmp_path / "grpc.sock") as channel:
        yield secrets_pb.SecretsStub(channel)


# -- offline ---------------------------------------------------------------------------


async def test_reprs_never_show_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLBLIB_TEST_SECRET", ENV_VALUE)
    (tmp_path / "f").write_text(FILE_VALUE)
    s = Secrets(
        {
            "b": Secret.from_bytes(VALUE),
            "e": Secret.from_env("LLBLIB_TEST_SECRET"),
            "f": Secret.from_file(tmp_path / "f"),
        }
    )
    texts = [repr(s), str(s), f"{s}", *(f"{x!r} {x!s}" for x in (Secret.from_bytes(VALUE.encode()),))]
    for text in texts:
        for value in (VALUE, ENV_VALUE, FILE_VALUE):
            assert value not in text
    assert repr(Secret.from_bytes(VALUE)) == "Secret.from_bytes(<redacted>)"
    assert repr(Secret.from_env("LLBLIB_TEST_SECRET")) == "Secret.from_env('LLBLIB_TEST_SECRET')"
    assert repr(Secret.from_file(tmp_path / "f")) == f"Secret.from_file({str(tmp_path / 'f')!r})"
    with pytest.raises(TypeError):
        pickle.dumps(Secret.from_bytes(VALUE))
    s.check()  # all readable
    assert Secret.from_bytes(VALUE).read() == VALUE.encode()
    assert s.ids == ["b", "e", "f"]


async def test_limits_and_missing_sources_raise_without_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = (FILE_VALUE * (MAX_SECRET_SIZE // len(FILE_VALUE) + 2)).encode()
    with pytest.raises(SecretError, match="limit of 512000 bytes") as info:
        Secret.from_bytes(big)
    assert FILE_VALUE not in str(info.value)
    Secret.from_bytes(b"x" * MAX_SECRET_SIZE)  # exactly the limit is fine

    (tmp_path / "big").write_bytes(big)
    with pytest.raises(SecretError, match=r"big is 5\d+ bytes, more than") as info:
        Secret.from_file(tmp_path / "big").read()
    assert FILE_VALUE not in str(info.value)

    monkeypatch.setenv("LLBLIB_TEST_BIG", big.decode())
    with pytest.raises(SecretError, match="variable LLBLIB_TEST_BIG is") as info:
        Secret.from_env("LLBLIB_TEST_BIG").read()
    assert FILE_VALUE not in str(info.value)

    monkeypatch.delenv("LLBLIB_TEST_MISSING", raising=False)
    with pytest.raises(SecretError, match="environment variable LLBLIB_TEST_MISSING is not set") as info:
        Secrets({"m": Secret.from_env("LLBLIB_TEST_MISSING")}).check()
    assert info.value.status is Status.NOT_FOUND
    with pytest.raises(SecretError, match="does not exist"):
        Secret.from_file(tmp_path / "nope").read()

    with pytest.raises(TypeError, match="must be a Secret"):
        Secrets({"x": VALUE})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="non-empty"):
        Secrets({"": Secret.from_bytes(b"")})
    with pytest.raises(ValueError, match="bad environment variable"):
        Secret.from_env("A=B")


async def test_get_secret_rpc_serves_values_and_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LLBLIB_TEST_SECRET", ENV_VALUE)
    monkeypatch.delenv("LLBLIB_TEST_MISSING", raising=False)
    (tmp_path / "f").write_text(FILE_VALUE)
    (tmp_path / "big").write_bytes(b"B" * (MAX_SECRET_SIZE + 1))
    secrets = Secrets(
        {
            "b": Secret.from_bytes(VALUE),
            "e": Secret.from_env("LLBLIB_TEST_SECRET"),
            "f": Secret.from_file(tmp_path / "f"),
            "missing-env": Secret.from_env("LLBLIB_TEST_MISSING"),
            "big": Secret.from_file(tmp_path / "big"),
        }
    )
    with anyio.fail_after(20):
        async with _serve(tmp_path, secrets) as stub:
            for sid, value in (("b", VALUE), ("e", ENV_VALUE), ("f", FILE_VALUE)):
                assert (await stub.get_secret(secrets_pb.GetSecretRequest(id=sid))).data == value.encode()
            with pytest.raises(GRPCError) as err:
                await stub.get_secret(secrets_pb.GetSecretRequest(id="unknown"))
            assert err.value.status is Status.NOT_FOUND
            assert err.value.message == "secret unknown not found"
            with pytest.raises(GRPCError) as err:
                await stub.get_secret(secrets_pb.GetSecretRequest(id="missing-env"))
            assert err.value.status is Status.NOT_FOUND
            assert (
                err.value.message == "secret missing-env: environment variable LLBLIB_TEST_MISSING is not set"
            )
            with pytest.raises(GRPCError) as err:
                await stub.get_secret(secrets_pb.GetSecretRequest(id="big"))
            assert err.value.status is Status.INVALID_ARGUMENT
            assert "more than BuildKit's limit" in (err.value.message or "")
    assert secrets.calls == {"b": 1, "e": 1, "f": 1, "unknown": 1, "missing-env": 1, "big": 1}
    for value in (VALUE, ENV_VALUE, FILE_VALUE):
        assert value not in caplog.text


# -- live ------------------------------------------------------------------------------


async def test_secret_files_and_env_reach_the_command(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_rootfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLBLIB_TEST_SECRET", ENV_VALUE)
    (tmp_path / "f").write_text(FILE_VALUE)
    secrets = Secrets(
        {
            "bytes": Secret.from_bytes(VALUE),
            "env": Secret.from_env("LLBLIB_TEST_SECRET"),
            "file": Secret.from_file(tmp_path / "f"),
        }
    )
    es = _rootfs(buildkit_busybox_rootfs).run(
        "mkdir /out; cat /run/secrets/bytes > /out/bytes; cat /run/s/file > /out/file;"
        ' echo "$FROM_ENV" > /out/env; stat -c "%u:%g %a" /run/s/file > /out/stat;'
        " ls /run/secrets > /out/ls",
        shell=True,
        mounts=[
            llb.secret_mount("/run/secrets/bytes", id="bytes"),
            llb.secret_mount("/run/s/file", id="file", uid=65534, gid=65534, mode=0o440),
            llb.secret_mount(env="FROM_ENV", id="env"),
            llb.secret_mount("/run/secrets/absent", id="absent", optional=True),
        ],
        ignore_cache=True,
    )
    # The definition carries ids only, never values.
    definition = llb.marshal(es.root)
    for value in (VALUE, ENV_VALUE, FILE_VALUE):
        assert value.encode() not in definition.to_bytes()
    out = tmp_path / "out"
    with anyio.fail_after(120):
        async with llblib_async.connect(buildkit_daemon.address) as client:
            await client.solve(
                llb.scratch().copy(es.root, "/out", "/", contents_only=True),
                exports=[llblib_async.LocalExport(out)],
                attachables=[secrets],
            )
    assert (out / "bytes").read_text() == VALUE
    assert (out / "file").read_text() == FILE_VALUE
    assert (out / "env").read_text() == ENV_VALUE + "\n"
    assert (out / "stat").read_text() == "65534:65534 440\n"
    assert (out / "ls").read_text() == "bytes\n"  # the optional unknown secret: no file
    assert secrets.calls["absent"] >= 1


async def test_failing_build_and_unknown_id_do_not_leak_values(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_rootfs: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = Secrets({"token": Secret.from_bytes(VALUE)})
    progress = llblib_async.RecordingProgress()
    failing = _rootfs(buildkit_busybox_rootfs).run(
        "wc -c < /run/secrets/token; grep -q . /run/secrets/token && echo used-the-token; exit 3",
        shell=True,
        mounts=[llb.secret_mount("/run/secrets/token", id="token")],
        ignore_cache=True,
    )
    with anyio.fail_after(120):
        async with llblib_async.connect(buildkit_daemon.address) as client:
            with pytest.raises(llblib_async.SolveError) as err:
                await client.solve(failing.root, attachables=[secrets], progress=progress)
    assert err.value.exit_code == 3
    logs = progress.logs()
    assert b"used-the-token" in logs  # the step did run with the secret...
    assert str(len(VALUE)).encode() in logs
    texts = [str(err.value), repr(err.value), logs.decode(errors="replace"), caplog.text]
    texts += [v.name for v in progress.vertices.values()]
    for text in texts:
        assert VALUE not in text  # ...and nothing we produce shows it

    unknown = _rootfs(buildkit_busybox_rootfs).run(
        "cat /run/secrets/nope", shell=True, mounts=[llb.secret_mount("/run/secrets/nope", id="nope")]
    )
    with anyio.fail_after(120):
        async with llblib_async.connect(buildkit_daemon.address) as client:
            with pytest.raises(llblib_async.SolveError, match="secret nope: not found") as err:
                await client.solve(unknown.root, attachables=[secrets])
    assert VALUE not in str(err.value)
    assert VALUE not in caplog.text


async def test_too_big_file_and_missing_env_fail_the_build_clearly(
    buildkit_daemon: BuildkitDaemon,
    buildkit_busybox_rootfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("LLBLIB_TEST_MISSING", raising=False)
    big = tmp_path / "big"
    big.write_text(FILE_VALUE * (MAX_SECRET_SIZE // len(FILE_VALUE) + 2))
    secrets = Secrets({"big": Secret.from_file(big), "gone": Secret.from_env("LLBLIB_TEST_MISSING")})
    base = _rootfs(buildkit_busybox_rootfs)
    too_big = base.run("true", mounts=[llb.secret_mount("/run/secrets/big", id="big")], ignore_cache=True)
    with anyio.fail_after(120):
        async with llblib_async.connect(buildkit_daemon.address) as client:
            with pytest.raises(llblib_async.SolveError, match="more than BuildKit's limit") as err:
                await client.solve(too_big.root, attachables=[secrets])
            assert str(big) in str(err.value)
            assert FILE_VALUE not in str(err.value)

            missing = base.run(
                "true", mounts=[llb.secret_mount("/run/secrets/gone", id="gone")], ignore_cache=True
            )
            with pytest.raises(llblib_async.SolveError, match="secret gone: not found"):
                await client.solve(missing.root, attachables=[secrets])
            # optional: the build runs without it
            optional = base.run(
                "test ! -e /run/secrets/gone",
                shell=True,
                mounts=[llb.secret_mount("/run/secrets/gone", id="gone", optional=True)],
                ignore_cache=True,
            )
            await client.solve(optional.root, attachables=[secrets])
    assert "environment variable LLBLIB_TEST_MISSING is not set" in caplog.text  # our debug log says why
    assert FILE_VALUE not in caplog.text
