"""Read image configs straight from a registry over the Distribution (v2) HTTP API.

:class:`RegistryResolver` implements
:class:`~llblib_async.llb.ImageConfigResolver` without a BuildKit daemon: it
fetches the manifest (picking the wanted platform from an index / manifest
list), then the config blob, and checks every digest on the way.  It is what
llblib's default resolver does from the client host (anonymous HTTPS), plus
basic auth and the bearer-token flow, and plain HTTP for loopback registries.

HTTP goes through httpx (:mod:`llblib_async._wire.http`: one client per
:meth:`RegistryResolver.resolve`, connections kept alive within it, bounded bodies,
redirects followed here so credentials stay on their host), through the proxies
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` name, with Go's rules (loopback
registries are never proxied).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ._wire.address import is_loopback_hostname
from ._wire.http import http_client, read_limited
from .errors import RegistryError
from .llb.platform import Platform, default_platform
from .llb.reference import normalize_image_ref

__all__ = ["RegistryResolver", "split_reference"]

MEDIA_OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
_MANIFEST_ACCEPT: Final = ", ".join(
    [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST]
)
_INDEX_TYPES: Final = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})

_MAX_MANIFEST: Final = 4 << 20  # distribution itself refuses manifests over 4 MiB
_MAX_REDIRECTS: Final = 5
_DOCKER_HUB: Final = "docker.io"
_DOCKER_HUB_ENDPOINT: Final = "registry-1.docker.io"


def split_reference(ref: str) -> tuple[str, str, str | None, str | None]:
    """``(registry, repository, tag, digest)`` of an image ref, normalised like ``llb.image`` does.

    ``alpine`` → ``("docker.io", "library/alpine", "latest", None)``.
    """
    normalized = normalize_image_ref(ref)
    name, _, digest = normalized.partition("@")
    registry, _, rest = name.partition("/")
    repository, tag = rest, None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        repository, tag = rest[:colon], rest[colon + 1 :]
    return registry, repository, tag, digest or None


def _is_loopback(host: str) -> bool:
    return is_loopback_hostname(urllib.parse.urlsplit("//" + host).hostname or "")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_digest(ref: str, what: str, expected: str, data: bytes) -> None:
    algorithm, _, _ = expected.partition(":")
    if algorithm != "sha256":
        hasher = getattr(hashlib, algorithm, None) if algorithm in ("sha384", "sha512") else None
        if hasher is None:
            raise RegistryError(ref, f"{what} has unsupported digest algorithm {algorithm!r}")
        actual = f"{algorithm}:{hasher(data).hexdigest()}"
    else:
        actual = _sha256(data)
    if actual != expected:
        raise RegistryError(ref, f"{what} digest mismatch: expected {expected}, got {actual}")


# --- HTTP (httpx, see _wire/http.py) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


async def _http_get(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str], *, limit: int
) -> _Response:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported URL {url!r}")
    async with client.stream("GET", url, headers=dict(headers)) as response:
        body = await read_limited(response, limit)
        fields = {k.lower(): response.headers[k] for k in response.headers}
        return _Response(response.status_code, fields, body)


_CHALLENGE_PARAM = r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?'


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="…",service="…"`` → ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in re.finditer(_CHALLENGE_PARAM, rest):
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
    return scheme.lower(), params


# --- platform selection -------------------------------------------------------------------------------


def _variant_preference(p: Platform) -> list[str]:
    """Variants acceptable for ``p``, best first (containerd's ``platforms.Only``)."""
    if p.architecture == "arm":
        order = ["v8", "v7", "v6", "v5"]
        return order[order.index(p.variant) :] if p.variant in order else [p.variant]
    if p.architecture == "amd64":
        order = ["v4", "v3", "v2", ""]
        return order[order.index(p.variant) :] if p.variant in order else [p.variant]
    return [p.variant]


def _pick_manifest(ref: str, index: Mapping[str, Any], wanted: Platform) -> Mapping[str, Any]:
    want = wanted.normalize()
    candidates: list[tuple[int, Mapping[str, Any]]] = []
    available: list[str] = []
    variants = _variant_preference(want)
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict):
            continue
        plat = desc.get("platform")
        if not isinstance(plat, dict):
            continue
        try:
            have = Platform(
                os=str(plat.get("os", "")),
                architecture=str(plat.get("architecture", "")),
                variant=str(plat.get("variant", "") or ""),
            ).normalize()
        except (TypeError, ValueError):
            continue
        available.append(str(have))
        if have.os != want.os or have.architecture != want.architecture:
            continue
        if have.variant in variants:
            candidates.append((variants.index(have.variant), desc))
    if not candidates:
        listed = ", ".join(a for a in available if a != "unknown/unknown") or "none"
        raise RegistryError(ref, f"no manifest for platform {want} (available: {listed})")
    # best variant first; among equals, the index order (what containerd does)
    return min(candidates, key=lambda c: c[0])[1]


# --- the resolver -------------------------------------------------------------------------------------


class RegistryResolver:
    """Fetch image configs from registries (an :class:`~llblib_async.llb.ImageConfigResolver`).

    * ``credentials``: ``{"registry-host[:port]": (user, password)}``, used for
      basic auth and to obtain bearer tokens; other registries are accessed
      anonymously.  (Docker's config file and credential helpers are not read.)
    * ``insecure_hosts``: registries spoken to over plain HTTP.  Loopback
      registries (``localhost``, ``127.0.0.1``, ``[::1]``) always are, as in
      BuildKit.
    * ``default_platform``: used when ``resolve`` gets no platform (the host's).
    * ``timeout``: seconds per HTTP request; ``max_config_size`` bounds the blob.

    Authorization (bearer token or basic credentials) is cached per registry
    and repository for the resolver's lifetime and renewed when the registry
    answers 401.  Combine with
    :class:`~llblib_async.llb.CachingResolver` to fetch each config once.
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        insecure_hosts: Iterable[str] = (),
        default_platform: Platform | None = None,
        timeout: float = 30.0,
        max_config_size: int = 16 << 20,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._credentials = dict(credentials or {})
        self._insecure = frozenset(insecure_hosts)
        self._default_platform = default_platform
        self._timeout = timeout
        self._max_config = max_config_size
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        # Authorization header value per (registry, repository): a bearer token or basic credentials.
        self._auth: dict[tuple[str, str], str] = {}

    def _base_url(self, registry: str) -> str:
        host = _DOCKER_HUB_ENDPOINT if registry == _DOCKER_HUB else registry
        scheme = "http" if registry in self._insecure or _is_loopback(registry) else "https"
        return f"{scheme}://{host}"

    async def resolve(self, ref: str, platform: Platform | None) -> tuple[str, bytes]:
        """``(digest, config_bytes)`` of ``ref`` for ``platform`` (see the class doc).

        ``digest`` is that of what the reference names (the index of a
        multi-platform image, as BuildKit's resolver reports it), so pinning
        ``ref@digest`` keeps every platform selectable.  Raises
        :class:`RegistryError` (with the HTTP status) when the registry refuses
        or answers nonsense, including digest mismatches.
        """
        async with http_client(timeout=self._timeout, verify=self._ssl) as client:
            return await self._resolve(client, ref, platform)

    async def _resolve(
        self, client: httpx.AsyncClient, ref: str, platform: Platform | None
    ) -> tuple[str, bytes]:
        registry, repository, tag, digest = split_reference(ref)
        wanted = platform or self._default_platform or default_platform()
        base = f"{self._base_url(registry)}/v2/{repository}"
        reference = digest or tag or "latest"
        body, media_type, top_digest = await self._manifest(
            client, ref, registry, repository, f"{base}/manifests/{reference}"
        )
        if digest is not None:
            _check_digest(ref, "manifest", digest, body)
            top_digest = digest
        manifest = _json_object(ref, "manifest", body)
        media_type = str(manifest.get("mediaType") or media_type)
        if media_type in _INDEX_TYPES or ("manifests" in manifest and "config" not in manifest):
            chosen = _pick_manifest(ref, manifest, wanted)
            chosen_digest = str(chosen.get("digest", ""))
            body, _, _ = await self._manifest(
                client, ref, registry, repository, f"{base}/manifests/{chosen_digest}"
            )
            _check_digest(ref, "platform manifest", chosen_digest, body)
            manifest = _json_object(ref, "manifest", body)
        config = manifest.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryError(ref, "manifest has no config descriptor (not an image manifest?)")
        config_digest = config["digest"]
        size = config.get("size")
        if isinstance(size, int) and size > self._max_config:
            raise RegistryError(ref, f"config blob of {size} bytes exceeds max_config_size")
        response = await self._get(
            client, ref, registry, repository, f"{base}/blobs/{config_digest}", {}, self._max_config
        )
        _check_digest(ref, "config blob", config_digest, response.body)
        return top_digest, response.body

    async def _manifest(
        self, client: httpx.AsyncClient, ref: str, registry: str, repository: str, url: str
    ) -> tuple[bytes, str, str]:
        response = await self._get(
            client, ref, registry, repository, url, {"Accept": _MANIFEST_ACCEPT}, _MAX_MANIFEST
        )
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        # The digest of what we actually received, never trusted from a header.
        return response.body, media_type, _sha256(response.body)

    async def _get(
        self,
        client: httpx.AsyncClient,
        ref: str,
        registry: str,
        repository: str,
        url: str,
        headers: Mapping[str, str],
        limit: int,
    ) -> _Response:
        cached = self._auth.get((registry, repository))
        auth = {"Authorization": cached} if cached is not None else {}
        retried = False
        while True:
            response = await self._follow(client, ref, url, {**headers, **auth}, limit)
            if response.status == 401 and not retried:
                retried = True
                challenge = response.headers.get("www-authenticate", "")
                auth = await self._authorize(client, ref, registry, repository, challenge)
                if auth:
                    continue
            if response.status != 200:
                raise RegistryError(
                    ref, f"GET {url}: HTTP {response.status} {_error_text(response)}", status=response.status
                )
            return response

    async def _authorize(
        self, client: httpx.AsyncClient, ref: str, registry: str, repository: str, challenge: str
    ) -> dict[str, str]:
        scheme, params = _parse_challenge(challenge)
        creds = self._credentials.get(registry)
        basic = (
            None if creds is None else "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        )
        if scheme == "basic":
            if basic is None:
                raise RegistryError(ref, f"registry {registry} requires credentials", status=401)
            self._auth[(registry, repository)] = basic
            return {"Authorization": basic}
        if scheme != "bearer" or "realm" not in params:
            return {}
        query = {"scope": f"repository:{repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        headers = {} if basic is None else {"Authorization": basic}
        response = await self._follow(client, ref, url, headers, 1 << 20)
        if response.status != 200:
            raise RegistryError(
                ref,
                f"token request failed: HTTP {response.status} {_error_text(response)}",
                status=response.status,
            )
        answer = _json_object(ref, "token response", response.body)
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(ref, "token response has no token")
        self._auth[(registry, repository)] = f"Bearer {token}"
        return {"Authorization": f"Bearer {token}"}

    async def _follow(
        self, client: httpx.AsyncClient, ref: str, url: str, headers: Mapping[str, str], limit: int
    ) -> _Response:
        """GET ``url``, following redirects (blob stores); credentials never leave the original host."""
        origin = urllib.parse.urlsplit(url).netloc
        current = dict(headers)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    response = await _http_get(client, url, current, limit=limit)
            except (TimeoutError, httpx.TimeoutException):
                raise RegistryError(ref, f"GET {url}: no answer within {self._timeout}s") from None
            except (OSError, ValueError, httpx.HTTPError) as err:
                raise RegistryError(ref, f"GET {url}: {err}") from err
            if response.status in (301, 302, 303, 307, 308) and "location" in response.headers:
                url = urllib.parse.urljoin(url, response.headers["location"])
                if urllib.parse.urlsplit(url).netloc != origin:
                    current.pop("Authorization", None)
                continue
            return response
        raise RegistryError(ref, f"more than {_MAX_REDIRECTS} redirects")


def _json_object(ref: str, what: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as err:
        raise RegistryError(ref, f"{what} is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise RegistryError(ref, f"{what} is not a JSON object")
    return value


def _error_text(response: _Response) -> str:
    """The registry's own error message (``{"errors":[{"code","message"}]}``) if it sent one."""
    try:
        errors = json.loads(response.body).get("errors") or []
        return "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)
        )
    except (ValueError, AttributeError):
        return response.body[:200].decode("utf-8", "replace")
