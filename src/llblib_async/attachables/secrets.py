"""Secrets served to the daemon (``/moby.buildkit.secrets.v1.Secrets/GetSecret``, spec §3.3).

The daemon asks for a secret by id when an exec mounts it (``llb.secret_mount``,
``secret_env``) or when a git/http source names an auth secret. :class:`Secrets`
answers from a map of ids to :class:`Secret` sources (a file, an environment
variable, or bytes), each read when the daemon asks for it. An unknown id gets
``NOT_FOUND``, which the daemon reports as "secret <id>: not found" (and an
``optional`` mount then gets nothing).

Secret *values* never appear in anything this module produces: reprs, log records,
exceptions and the gRPC errors sent to the daemon (which end up in the build error)
name the id and the source (a path or a variable name), never the content.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import grpclib.const
import grpclib.server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from .._pb.moby.buildkit.secrets import v1 as secrets_pb
from ..errors import SecretError

__all__ = ["GET_SECRET_METHOD", "MAX_SECRET_SIZE", "Secret", "Secrets"]

log = logging.getLogger("llblib_async.secrets")

GET_SECRET_METHOD: Final = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
#: BuildKit's cap (Go ``secretsprovider.MaxSecretSize``): larger secrets are refused.
MAX_SECRET_SIZE: Final = 500 * 1024


def _too_big(what: str, size: int) -> SecretError:
    return SecretError(
        f"{what} is {size} bytes, more than BuildKit's limit of {MAX_SECRET_SIZE} bytes (500 KiB)",
        status=Status.INVALID_ARGUMENT,
    )


class Secret:
    """Where one secret's value comes from: a file, an environment variable, or bytes.

    Files and variables are read each time the daemon asks (so a value created after
    the build was set up is seen); use :meth:`read` to check a source up front. The
    repr shows the source (path or variable name), never the value.
    """

    __slots__ = ("_data", "_kind", "_source")

    def __init__(self, kind: str, source: str, data: bytes | None = None) -> None:
        # Use the from_* constructors.
        if kind not in ("file", "env", "bytes"):
            raise ValueError(f"unknown secret kind {kind!r}")
        self._kind = kind
        self._source = source
        self._data = data

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Secret:
        """The content of ``path`` (``~`` expanded and made absolute now, read at build time)."""
        return cls("file", os.path.abspath(os.path.expanduser(os.fspath(path))))

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """The value of environment variable ``name`` (read at build time, UTF-8 encoded)."""
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"bad environment variable name {name!r}")
        return cls("env", name)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | str) -> Secret:
        """A value given directly (``str`` is UTF-8 encoded)."""
        value = data.encode() if isinstance(data, str) else bytes(data)
        if len(value) > MAX_SECRET_SIZE:
            raise _too_big("secret value", len(value))
        return cls("bytes", "", value)

    @property
    def kind(self) -> str:
        """``"file"``, ``"env"`` or ``"bytes"``."""
        return self._kind

    @property
    def source(self) -> str:
        """The file path or variable name (``""`` for bytes)."""
        return self._source

    def __repr__(self) -> str:
        if self._kind == "file":
            return f"Secret.from_file({self._source!r})"
        if self._kind == "env":
            return f"Secret.from_env({self._source!r})"
        return "Secret.from_bytes(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._kind, self._source, self._data) == (other._kind, other._source, other._data)

    def __hash__(self) -> int:
        return hash((self._kind, self._source))

    def __reduce__(self) -> Any:
        raise TypeError("Secret objects cannot be pickled")

    def read(self) -> bytes:
        """The value now; :class:`SecretError` (naming the source, not the value) if unavailable."""
        if self._kind == "bytes":
            assert self._data is not None
            return self._data
        if self._kind == "env":
            value = os.environ.get(self._source)
            if value is None:
                raise SecretError(f"environment variable {self._source} is not set", status=Status.NOT_FOUND)
            data = value.encode()
            if len(data) > MAX_SECRET_SIZE:
                raise _too_big(f"environment variable {self._source}", len(data))
            return data
        path = Path(self._source)
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_SECRET_SIZE:
                    raise _too_big(f"file {self._source}", size)
                data = f.read(MAX_SECRET_SIZE + 1)
        except FileNotFoundError:
            raise SecretError(f"file {self._source} does not exist", status=Status.NOT_FOUND) from None
        except OSError as e:
            raise SecretError(f"cannot read file {self._source}: {e.strerror or type(e).__name__}") from None
        if len(data) > MAX_SECRET_SIZE:  # grew, or a special file with no size
            raise _too_big(f"file {self._source}", len(data))
        return data


class Secrets:
    """Attachable serving secrets by id: ``Secrets({"npmrc": Secret.from_file("~/.npmrc")})``.

    Pass it to ``client.solve(..., attachables=[...])``; mount with
    ``llb.secret_mount("/run/secrets/npmrc", id="npmrc")``. ``calls`` counts the
    daemon's requests per id (unknown ids included), for tests and diagnostics.
    """

    def __init__(self, secrets: Mapping[str, Secret] | None = None) -> None:
        self._secrets: dict[str, Secret] = {}
        for sid, secret in (secrets or {}).items():
            if not isinstance(sid, str) or not sid:
                raise ValueError(f"secret id must be a non-empty string, got {sid!r}")
            if not isinstance(secret, Secret):
                raise TypeError(
                    f"secret {sid!r} must be a Secret (Secret.from_file/from_env/from_bytes), "
                    f"got {type(secret).__name__}"
                )
            self._secrets[sid] = secret
        self.calls: dict[str, int] = {}

    @property
    def ids(self) -> list[str]:
        return list(self._secrets)

    def __contains__(self, sid: object) -> bool:
        return sid in self._secrets

    def __repr__(self) -> str:
        inner = ", ".join(f"{sid!r}: {s!r}" for sid, s in self._secrets.items())
        return f"Secrets({{{inner}}})"

    def check(self) -> None:
        """Read every secret now and raise :class:`SecretError` for the first unavailable one."""
        for sid, secret in self._secrets.items():
            try:
                secret.read()
            except SecretError as e:
                raise SecretError(f"secret {sid}: {e}", status=e.status) from None

    async def get(self, sid: str) -> bytes:
        """The value of secret ``sid`` (:class:`SecretError` with NOT_FOUND status if unknown)."""
        secret = self._secrets.get(sid)
        if secret is None:
            raise SecretError(f"secret {sid} not found", status=Status.NOT_FOUND)
        if secret.kind == "file":
            return await anyio.to_thread.run_sync(secret.read)
        return secret.read()

    async def _get_secret(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, secrets_pb.GetSecretRequest)
        sid = request.id
        self.calls[sid] = self.calls.get(sid, 0) + 1
        try:
            data = await self.get(sid)
        except SecretError as e:
            msg = str(e) if sid not in self._secrets else f"secret {sid}: {e}"
            log.debug("GetSecret %r refused: %s", sid, msg)
            raise GRPCError(e.status, msg) from None
        log.debug("GetSecret %r: served", sid)
        await stream.send_message(secrets_pb.GetSecretResponse(data=data))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            GET_SECRET_METHOD: grpclib.const.Handler(
                self._get_secret,
                grpclib.const.Cardinality.UNARY_UNARY,
                secrets_pb.GetSecretRequest,
                secrets_pb.GetSecretResponse,
            )
        }
