"""Registry credentials for the daemon: the session ``Auth`` service (``moby.filesync.v1``).

:class:`DockerAuthProvider` answers ``Auth/Credentials{Host}`` from the Docker CLI's
config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), like
BuildKit's Go ``authprovider``:

* ``auths[host]``: ``auth`` (base64 ``user:password``) or ``username``/``password``;
  an ``identitytoken`` is sent as the secret with an empty user name;
* credential helpers: ``credHelpers[host]`` or ``credsStore`` run
  ``docker-credential-<name> get`` with the server name on stdin;
* explicit ``credentials={host: (user, secret)}`` take precedence over the file.

Unknown hosts get an empty answer (anonymous access).  Pass an instance in
``attachables=`` of ``solve``.

**Client-side registry tokens.**  Like Go's provider, registry *bearer tokens* are fetched
by this process, so a registry password never reaches the daemon:

1. on a ``401 Bearer`` challenge the daemon asks ``GetTokenAuthority{host, salt}``; we
   answer an Ed25519 public key whose seed is ``HMAC-SHA256(key=salt, msg=seed)`` (the
   ``seed`` is 16 random bytes per provider and host, mixed in only when there is a secret
   for the host; ``salt`` is per daemon start);
2. ``VerifyTokenAuthority{host, payload, salt}`` signs the payload with that key (NaCl
   ``sign`` format: signature then payload), so the daemon can tell later sessions that
   hold the same key;
3. ``FetchToken{host, realm, service, scopes}``: we fetch the token from the realm - with
   credentials the OAuth2 ``POST`` form first (``grant_type=password``, or
   ``refresh_token`` for an identity token), falling back to ``GET`` with basic auth on
   404/401 (and 405 with a user name), as Go's ``authprovider`` does; anonymously a plain
   ``GET`` - and answer ``{token, expires_in, issued_at}``.

``Credentials`` is then not called for that host.  ``BUILDKIT_NO_CLIENT_TOKEN=1`` (read
at each request, as Go does) makes ``GetTokenAuthority`` answer ``UNAVAILABLE``: the
daemon falls back to asking ``Credentials`` and fetching tokens itself.

Token requests go through httpx (:mod:`llblib_async._wire.http`) and so through the
proxies ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` name, with the rules of Go's
``ProxyFromEnvironment`` that the Go provider uses (loopback never proxied).
They use certificate-verified HTTPS; plain ``http://`` realms are accepted only
on loopback hosts or on the registry's own host name (the daemon already talks to it in
plain HTTP, i.e. it is configured insecure), unless ``insecure_token_realms=True``.
Authorization headers are never forwarded on redirects.  :attr:`DockerAuthProvider.calls`
counts the requests served, per ``(method, host)``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, Unpack

import anyio
import grpclib.const
import grpclib.server
import httpx
from grpclib.exceptions import GRPCError

from .._pb.moby.filesync.v1 import (
    CredentialsRequest,
    CredentialsResponse,
    FetchTokenRequest,
    FetchTokenResponse,
    GetTokenAuthorityRequest,
    GetTokenAuthorityResponse,
    VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
)
from .._wire.address import is_loopback_hostname
from .._wire.http import http_client, read_limited
from ..errors import AuthConfigError, TokenFetchError
from . import _ed25519

__all__ = [
    "DOCKER_HUB_CONFIG_KEY",
    "NO_CLIENT_TOKEN_ENV",
    "DockerAuthProvider",
    "docker_config_path",
]

#: The key Docker Hub's credentials are stored under in the config file.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("registry-1.docker.io", "docker.io", "index.docker.io")
#: Seconds a credential helper may take.
HELPER_TIMEOUT = 30.0
#: Set to a true value (``1``, ``true``...) to let the daemon fetch registry tokens itself.
NO_CLIENT_TOKEN_ENV = "BUILDKIT_NO_CLIENT_TOKEN"
#: Seconds a token request may take (per connect/read; the daemon waits 60s per call).
TOKEN_TIMEOUT = 50.0
#: ``expires_in`` when the token server gives none (Go's ``defaultExpiration``).
DEFAULT_TOKEN_EXPIRY = 60
_MAX_TOKEN_RESPONSE = 1 << 20
_MAX_REDIRECTS = 10  # Go's http.Client stops after 10
_SERVICE = "/moby.filesync.v1.Auth/"
_CREDENTIALS = _SERVICE + "Credentials"
_FETCH_TOKEN = _SERVICE + "FetchToken"
_GET_TOKEN_AUTHORITY = _SERVICE + "GetTokenAuthority"
_VERIFY_TOKEN_AUTHORITY = _SERVICE + "VerifyTokenAuthority"
_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


def _env_true(name: str) -> bool:
    """Go's ``strconv.ParseBool`` truth values."""
    return os.environ.get(name, "").strip() in ("1", "t", "T", "true", "TRUE", "True")


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
    ``insecure_token_realms=True`` allows plain ``http://`` token servers anywhere.
    """

    def __init__(
        self,
        config_path: Path | str | None = None,
        *,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        use_helpers: bool = True,
        insecure_token_realms: bool = False,
    ) -> None:
        self.config_path = Path(config_path) if config_path is not None else docker_config_path()
        self.static = dict(credentials or {})
        self.use_helpers = use_helpers
        self.insecure_token_realms = insecure_token_realms
        #: Requests served, per ``(method, host)``: ``("Credentials", "127.0.0.1:5000")``...
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._config: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._seeds: dict[str, bytes] = {}

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

    def token_authority_key(self, host: str, salt: bytes, has_secret: bool) -> bytes:
        """The Ed25519 seed of the token authority for ``host`` (Go's ``getAuthorityKey``).

        ``HMAC-SHA256(key=salt, msg=seed)``, where ``seed`` is random per provider and
        host and is left out when there is no secret for the host (anonymous access needs
        no proof of identity, so all clients then share the key).
        """
        mac = hmac.new(salt, digestmod=hashlib.sha256)
        if has_secret:
            mac.update(self._seeds.setdefault(host, secrets.token_bytes(16)))
        return mac.digest()[: _ed25519.SEED_SIZE]

    async def fetch_token(
        self, host: str, realm: str, service: str, scopes: Sequence[str], *, client_id: str = ""
    ) -> tuple[str, int, int]:
        """``(token, expires_in, issued_at)`` from the token server ``realm`` for ``host``.

        Uses :meth:`lookup`'s credentials for ``host`` (anonymous without any); raises
        :class:`TokenFetchError`.  ``issued_at`` is a Unix time, 0 when not given.
        """
        user, secret = await self.lookup(host)
        request = _TokenRequest(
            host=host,
            realm=realm,
            service=service,
            scopes=tuple(scopes),
            username=user,
            secret=secret,
            client_id=client_id or "buildkit-client",
            insecure_realms=self.insecure_token_realms,
        )
        _check_realm(request)
        if not secret:
            answer = await _fetch_with_get(request)
        else:
            try:
                answer = await _fetch_with_oauth(request)
            except TokenFetchError as err:
                # Registries without the OAuth POST form answer 404 (GCR), 401 (Artifactory)
                # or 405: retry with GET and basic auth, like Go's authprovider.
                if not (err.status in (401, 404) or (err.status == 405 and user)):
                    raise
                answer = await _fetch_with_get(request)
        return _token_answer(request, answer)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        return {
            _CREDENTIALS: grpclib.const.Handler(
                self._credentials, unary, CredentialsRequest, CredentialsResponse
            ),
            _FETCH_TOKEN: grpclib.const.Handler(
                self._fetch_token, unary, FetchTokenRequest, FetchTokenResponse
            ),
            _GET_TOKEN_AUTHORITY: grpclib.const.Handler(
                self._get_token_authority, unary, GetTokenAuthorityRequest, GetTokenAuthorityResponse
            ),
            _VERIFY_TOKEN_AUTHORITY: grpclib.const.Handler(
                self._verify_token_authority,
                unary,
                VerifyTokenAuthorityRequest,
                VerifyTokenAuthorityResponse,
            ),
        }

    async def _lookup_for_daemon(self, host: str) -> tuple[str, str]:
        try:
            return await self.lookup(host)
        except AuthConfigError as err:
            raise GRPCError(grpclib.const.Status.INTERNAL, str(err)) from err

    async def _credentials(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, CredentialsRequest)
        self.calls["Credentials", request.host] += 1
        user, secret = await self._lookup_for_daemon(request.host)
        await stream.send_message(CredentialsResponse(username=user, secret=secret))

    async def _authority_seed(self, host: str, salt: bytes) -> bytes:
        if _env_true(NO_CLIENT_TOKEN_ENV):
            raise GRPCError(grpclib.const.Status.UNAVAILABLE, "client side tokens disabled")
        _, secret = await self._lookup_for_daemon(host)
        return self.token_authority_key(host, salt, bool(secret))

    async def _get_token_authority(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, GetTokenAuthorityRequest)
        self.calls["GetTokenAuthority", request.host] += 1
        seed = await self._authority_seed(request.host, request.salt)
        public = await _in_thread(_ed25519.public_key, seed)
        await stream.send_message(GetTokenAuthorityResponse(public_key=public))

    async def _verify_token_authority(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, VerifyTokenAuthorityRequest)
        self.calls["VerifyTokenAuthority", request.host] += 1
        seed = await self._authority_seed(request.host, request.salt)
        signature = await _in_thread(_ed25519.sign, seed, request.payload)
        # NaCl's sign.Sign format, which the daemon opens with sign.Open: signature || message
        await stream.send_message(VerifyTokenAuthorityResponse(signed=signature + request.payload))

    async def _fetch_token(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, FetchTokenRequest)
        self.calls["FetchToken", request.host] += 1
        try:
            token, expires_in, issued_at = await self.fetch_token(
                request.host, request.realm, request.service, request.scopes, client_id=request.client_id
            )
        except AuthConfigError as err:
            raise GRPCError(grpclib.const.Status.INTERNAL, str(err)) from err
        except TokenFetchError as err:
            # UNKNOWN, like Go's plain errors: the daemon fails the build (a SolveError here)
            raise GRPCError(grpclib.const.Status.UNKNOWN, str(err)) from err
        await stream.send_message(FetchTokenResponse(token=token, expires_in=expires_in, issued_at=issued_at))


# --------------------------------------------------------------------------- token requests


@dataclasses.dataclass(frozen=True, slots=True)
class _TokenRequest:
    host: str
    realm: str
    service: str
    scopes: tuple[str, ...]
    username: str
    secret: str
    client_id: str
    insecure_realms: bool


async def _in_thread(func: Callable[[Unpack[_Args]], _T], *args: *_Args) -> _T:
    """Run blocking work (the pure-Python Ed25519's big-integer arithmetic) off the event loop."""
    return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)


def _check_realm(request: _TokenRequest) -> None:
    parts = urllib.parse.urlsplit(request.realm)
    hostname = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not hostname:
        raise TokenFetchError(request.host, request.realm, "the realm is not an http(s) URL")
    if parts.scheme == "http" and not request.insecure_realms:
        registry_name = urllib.parse.urlsplit("//" + request.host).hostname or ""
        if not (is_loopback_hostname(hostname) or hostname == registry_name):
            raise TokenFetchError(
                request.host,
                request.realm,
                "refusing a plain-http token server that is neither loopback nor the registry's "
                "own host (pass insecure_token_realms=True, or set BUILDKIT_NO_CLIENT_TOKEN=1 to "
                "let the daemon fetch tokens)",
            )


async def _open(
    request: _TokenRequest,
    method: str,
    url: str,
    *,
    form: Mapping[str, str] | None = None,
    authorization: str | None = None,
) -> dict[str, Any]:
    """Send one token request, return the JSON object answered.

    Redirects are followed here, each target checked by the realm policy
    (:func:`_check_realm`); the Authorization header is never sent to a redirect
    target; 301/302/303 turn a POST into a GET without body (what Go's client does).
    """
    headers = {} if authorization is None else {"Authorization": authorization}
    data = None if form is None else dict(form)
    try:
        async with http_client(timeout=TOKEN_TIMEOUT) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.stream(method, url, headers=headers, data=data) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        _check_realm(dataclasses.replace(request, realm=url))
                        headers = {}
                        if response.status_code in (301, 302, 303):
                            method, data = "GET", None
                        continue
                    if response.status_code >= 400:
                        detail = (await response.aread())[:4096].decode(errors="replace").strip()[:512]
                        raise TokenFetchError(
                            request.host,
                            request.realm,
                            f"{method} answered {response.status_code} {response.reason_phrase}"
                            + (f": {detail}" if detail else ""),
                            status=response.status_code,
                        )
                    body = await read_limited(response, _MAX_TOKEN_RESPONSE)
                    break
            else:
                raise TokenFetchError(request.host, request.realm, f"more than {_MAX_REDIRECTS} redirects")
    except ValueError as err:
        raise TokenFetchError(request.host, request.realm, "token response too large") from err
    except (OSError, httpx.HTTPError, httpx.InvalidURL) as err:
        raise TokenFetchError(request.host, request.realm, f"request failed: {err}") from err
    try:
        answer = json.loads(body)
    except ValueError as err:
        raise TokenFetchError(request.host, request.realm, f"token response is not JSON: {err}") from err
    if not isinstance(answer, dict):
        raise TokenFetchError(request.host, request.realm, "token response is not a JSON object")
    return answer


async def _fetch_with_oauth(request: _TokenRequest) -> dict[str, Any]:
    """containerd's ``FetchTokenWithOAuth``: the OAuth2 form POSTed to the realm."""
    form = {"service": request.service, "client_id": request.client_id}
    if request.scopes:
        form["scope"] = " ".join(request.scopes)
    if request.username:
        form.update(grant_type="password", username=request.username, password=request.secret)
    else:  # an identity token
        form.update(grant_type="refresh_token", refresh_token=request.secret)
    answer = await _open(request, "POST", request.realm, form=form)
    if not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
        raise TokenFetchError(request.host, request.realm, "the OAuth token response has no access_token")
    answer["token"] = answer["access_token"]
    return answer


async def _fetch_with_get(request: _TokenRequest) -> dict[str, Any]:
    """containerd's ``FetchToken``: GET ``realm?service=…&scope=…`` (basic auth with a secret)."""
    parts = urllib.parse.urlsplit(request.realm)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if request.service:
        query.append(("service", request.service))
    query.extend(("scope", scope) for scope in request.scopes)
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    authorization = None
    if request.secret:
        basic = base64.b64encode(f"{request.username}:{request.secret}".encode()).decode()
        authorization = f"Basic {basic}"
    answer = await _open(request, "GET", url, authorization=authorization)
    token = answer.get("access_token") or answer.get("token")
    if not isinstance(token, str) or not token:
        raise TokenFetchError(request.host, request.realm, "the token response has no token")
    answer["token"] = token
    return answer


def _token_answer(request: _TokenRequest, answer: Mapping[str, Any]) -> tuple[str, int, int]:
    expires = answer.get("expires_in")
    expires_in = expires if isinstance(expires, int) and expires > 0 else DEFAULT_TOKEN_EXPIRY
    issued_at = 0
    raw = answer.get("issued_at")
    if isinstance(raw, str) and raw:
        try:
            when = datetime.datetime.fromisoformat(raw)
        except ValueError as err:
            raise TokenFetchError(request.host, request.realm, f"bad issued_at {raw!r}") from err
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        if when.year > 1:  # Go's zero time means "not given"
            issued_at = int(when.timestamp())
    return str(answer["token"]), expires_in, issued_at


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
