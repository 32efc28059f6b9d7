"""Registry credentials for the daemon: the session ``Auth`` service (``moby.filesync.v1``).

:class:`DockerAuthProvider` answers ``Auth/Credentials{Host}`` from the Docker CLI's
config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), like
BuildKit's Go ``authprovider``:

* ``auths[host]``: ``auth`` (base64 ``user:password``) or ``username``/``password``;
  an ``identitytoken`` is sent as the secret with an empty user name;
* credential helpers: ``credHelpers[host]`` or ``credsStore`` run
  ``docker-credential-<name> get`` with the server name on stdin;
* explicit ``credentials={host: (user, secret)}`` take precedence over the file.

Unknown hosts get an empty answer (anonymous access).  ``GetTokenAuthority``
answers ``UNIMPLEMENTED``, so the daemon fetches registry tokens itself with these
credentials (spec §3.5).  Pass an instance in ``attachables=`` of ``solve``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import grpclib.const
import grpclib.server
from grpclib.exceptions import GRPCError

from ._pb.moby.filesync.v1 import CredentialsRequest, CredentialsResponse, GetTokenAuthorityRequest
from .errors import BuildKitError

__all__ = ["DOCKER_HUB_CONFIG_KEY", "AuthConfigError", "DockerAuthProvider", "docker_config_path"]

#: The key Docker Hub's credentials are stored under in the config file.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("registry-1.docker.io", "docker.io", "index.docker.io")
#: Seconds a credential helper may take.
HELPER_TIMEOUT = 30.0
_CREDENTIALS = "/moby.filesync.v1.Auth/Credentials"
_GET_TOKEN_AUTHORITY = "/moby.filesync.v1.Auth/GetTokenAuthority"


class AuthConfigError(BuildKitError):
    """The Docker config file or a credential helper gave unusable data."""


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _hostname(key: str) -> str:
    """Docker's ``ConvertToHostname``: strip the scheme and any path from a config key."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.split("/", 1)[0]


def _config_key(host: str) -> str:
    return DOCKER_HUB_CONFIG_KEY if host in _DOCKER_HUB_HOSTS else host


class DockerAuthProvider:
    """Session attachable serving registry credentials (see the module doc).

    ``config_path``: the Docker config file (default :func:`docker_config_path`; a
    missing file means no stored credentials).  ``use_helpers=False`` ignores
    ``credsStore``/``credHelpers``.  The file is read once, on the first request.
    """

    def __init__(
        self,
        config_path: Path | str | None = None,
        *,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        use_helpers: bool = True,
    ) -> None:
        self.config_path = Path(config_path) if config_path is not None else docker_config_path()
        self.static = dict(credentials or {})
        self.use_helpers = use_helpers
        self._config: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> dict[str, Any]:
        async with self._lock:
            if self._config is None:
                path = anyio.Path(self.config_path)
                try:
                    text = await path.read_text()
                except FileNotFoundError:
                    text = "{}"
                try:
                    loaded = json.loads(text) if text.strip() else {}
                except ValueError as err:
                    raise AuthConfigError(f"{self.config_path}: invalid JSON: {err}") from err
                if not isinstance(loaded, dict):
                    raise AuthConfigError(f"{self.config_path}: not a JSON object")
                self._config = loaded
            return self._config

    async def lookup(self, host: str) -> tuple[str, str]:
        """``(username, secret)`` for ``host`` (``("", "")``: anonymous)."""
        for key in (host, _config_key(host)):
            if key in self.static:
                return self.static[key]
        config = await self._load()
        key = _config_key(host)
        if self.use_helpers:
            helpers = config.get("credHelpers") or {}
            helper = helpers.get(key) or helpers.get(host) if isinstance(helpers, dict) else None
            if not helper and isinstance(config.get("credsStore"), str):
                helper = config["credsStore"]
            if helper:
                found = await _run_helper(str(helper), key)
                if found is not None:
                    return found
        auths = config.get("auths") or {}
        entry = auths.get(key) if isinstance(auths, dict) else None
        if entry is None and isinstance(auths, dict):
            entry = next((v for k, v in auths.items() if _hostname(k) == _hostname(key)), None)
        if not isinstance(entry, dict):
            return "", ""
        return _decode_entry(key, entry)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        return {
            _CREDENTIALS: grpclib.const.Handler(
                self._credentials, unary, CredentialsRequest, CredentialsResponse
            ),
            # FetchToken / VerifyTokenAuthority are only called after a GetTokenAuthority
            # answer; UNIMPLEMENTED here makes the daemon fetch tokens itself.
            _GET_TOKEN_AUTHORITY: grpclib.const.Handler(
                self._unimplemented, unary, GetTokenAuthorityRequest, CredentialsResponse
            ),
        }

    async def _credentials(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, CredentialsRequest)
        try:
            user, secret = await self.lookup(request.host)
        except AuthConfigError as err:
            raise GRPCError(grpclib.const.Status.INTERNAL, str(err)) from err
        await stream.send_message(CredentialsResponse(username=user, secret=secret))

    async def _unimplemented(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        await stream.recv_message()
        raise GRPCError(grpclib.const.Status.UNIMPLEMENTED, "client-side token authority not supported")


def _decode_entry(key: str, entry: Mapping[str, Any]) -> tuple[str, str]:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return "", token
    user, password = entry.get("username") or "", entry.get("password") or ""
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise AuthConfigError(f"auths[{key!r}].auth is not base64 'user:password'") from err
        user, sep, password = decoded.partition(":")
        if not sep:
            raise AuthConfigError(f"auths[{key!r}].auth is not base64 'user:password'")
    return str(user), str(password)


async def _run_helper(name: str, server: str) -> tuple[str, str] | None:
    """``docker-credential-<name> get``; None when it has nothing for ``server``."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        raise AuthConfigError(f"credential helper docker-credential-{name} not found in PATH")
    proc = await asyncio.create_subprocess_exec(
        program,
        "get",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(HELPER_TIMEOUT):
            out, err = await proc.communicate(server.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AuthConfigError(f"docker-credential-{name} timed out") from None
    if proc.returncode != 0:
        text = (out or err).decode(errors="replace").strip()
        if "credentials not found" in text.lower():
            return None
        raise AuthConfigError(f"docker-credential-{name} get failed: {text}")
    try:
        answer = json.loads(out)
        user, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    except (ValueError, AttributeError) as e:
        raise AuthConfigError(f"docker-credential-{name} gave invalid JSON") from e
    if user == "<token>":  # an identity token
        return "", secret
    return user, secret
