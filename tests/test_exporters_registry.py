"""The ``image`` exporter pushing to loopback registries, and registry auth from the session.

Pushed manifests and configs are read back over plain HTTP (the registry fixtures are
loopback, so BuildKit and we speak HTTP to them): the State's image config (env,
labels, cmd, entrypoint, workdir) arrives in the pushed config, compression and
``oci_mediatypes`` give the expected media types, ``push_by_digest`` pushes no tag.
The ``buildkit_auth_registry`` fixture checks :class:`~llblib_async.DockerAuthProvider`
(credentials from a Docker config file, as the daemon asks for them), and failure
without or with wrong credentials.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

import llblib_async
from llblib_async import AuthConfigError, DockerAuthProvider, llb
from llblib_async.exporters import ImageExport
from llblib_async.llb import config_ops as co
from llblib_async.testing import BuildkitDaemon, Registry

pytestmark = pytest.mark.asyncio(loop_scope="session")

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HTTP_TIMEOUT = 30.0


def _get(url: str, *, accept: str = "", auth: tuple[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


async def pull_manifest(
    registry: Registry, repo: str, reference: str, *, auth: tuple[str, str] | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(digest, manifest, config)`` of ``repo:reference`` in ``registry``."""
    status, media_type, body = await asyncio.to_thread(
        _get, f"{registry.url}/v2/{repo}/manifests/{reference}", accept=MANIFEST_ACCEPT, auth=auth
    )
    assert status == 200, body.decode(errors="replace")
    manifest: dict[str, Any] = json.loads(body)
    assert manifest["mediaType"] == media_type.partition(";")[0]
    status, _, raw = await asyncio.to_thread(
        _get, f"{registry.url}/v2/{repo}/blobs/{manifest['config']['digest']}", auth=auth
    )
    assert status == 200
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == manifest["config"]["digest"]
    return "sha256:" + hashlib.sha256(body).hexdigest(), manifest, json.loads(raw)


def _app_state(marker: str) -> llb.State:
    return (
        llb.scratch()
        .with_platform(llb.default_platform())
        .mkfile("/hello", f"hello {marker}\n")
        .apply(
            co.add_default_env("GREETING", "hello"),
            co.add_label("org.example.title", "exporter test"),
            co.add_label("org.example.marker", marker),
            co.default_dir("/srv"),
            co.entrypoint("/bin/sh", "-c"),
            co.cmd("cat /hello"),
        )
    )


async def test_push_carries_the_state_image_config(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    marker = uuid.uuid4().hex
    st = _app_state(marker)
    ref = f"{buildkit_registry.host}/llblib-export/app:v1"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(st, exports=[ImageExport(ref, push=True, insecure=True)])
    digest, manifest, config = await pull_manifest(buildkit_registry, "llblib-export/app", "v1")
    assert result.exporter_response["containerimage.digest"] == digest
    assert result.exporter_response["containerimage.config.digest"] == manifest["config"]["digest"]
    assert result.exporter_response["image.name"] == ref
    run = config["config"]
    assert "GREETING=hello" in run["Env"]
    assert run["Labels"] == {"org.example.title": "exporter test", "org.example.marker": marker}
    assert run["WorkingDir"] == "/srv"
    assert run["Entrypoint"] == ["/bin/sh", "-c"]
    assert run["Cmd"] == ["cat /hello"]
    assert config["rootfs"]["type"] == "layers"
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert len(manifest["layers"]) == 1


async def test_explicit_image_config_and_annotations_win(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    st = _app_state(uuid.uuid4().hex)
    assert st.image_config is not None
    explicit = co.marshal_with_image_config(st.apply(co.cmd("explicit")), epoch=1_700_000_000).image_config
    assert explicit is not None
    ref = f"{buildkit_registry.host}/llblib-export/explicit:v1"
    export = ImageExport(
        ref,
        push=True,
        insecure=True,
        image_config=explicit,
        oci_mediatypes=True,
        annotations={"org.opencontainers.image.title": "annotated"},
    )
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(st, exports=[export])
    _, manifest, config = await pull_manifest(buildkit_registry, "llblib-export/explicit", "v1")
    assert config["config"]["Cmd"] == ["explicit"]
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["annotations"]["org.opencontainers.image.title"] == "annotated"


@pytest.mark.parametrize(
    ("compression", "oci", "manifest_type", "layer_type"),
    [
        ("gzip", False, DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        ("uncompressed", False, DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar"),
        ("gzip", True, OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", True, OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ],
)
async def test_compression_and_media_types(
    buildkit_daemon: BuildkitDaemon,
    buildkit_registry: Registry,
    compression: str,
    oci: bool,
    manifest_type: str,
    layer_type: str,
) -> None:
    # a fresh layer each time, so force_compression is not needed for a cached blob
    st = _app_state(uuid.uuid4().hex)
    repo = f"llblib-export/compress-{compression}-{'oci' if oci else 'docker'}"
    export = ImageExport(
        f"{buildkit_registry.host}/{repo}:v1",
        push=True,
        insecure=True,
        compression=compression,  # type: ignore[arg-type]
        force_compression=True,
        oci_mediatypes=oci,
    )
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(st, exports=[export])
    _, manifest, _ = await pull_manifest(buildkit_registry, repo, "v1")
    assert manifest["mediaType"] == manifest_type
    assert [layer["mediaType"] for layer in manifest["layers"]] == [layer_type]


async def test_push_by_digest_pushes_no_tag(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    repo = "llblib-export/by-digest"
    export = ImageExport(f"{buildkit_registry.host}/{repo}", push=True, push_by_digest=True, insecure=True)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(_app_state(uuid.uuid4().hex), exports=[export])
    digest = result.exporter_response["containerimage.digest"]
    got, _, config = await pull_manifest(buildkit_registry, repo, digest)
    assert got == digest
    assert config["config"]["Cmd"] == ["cat /hello"]
    status, _, body = await asyncio.to_thread(_get, f"{buildkit_registry.url}/v2/{repo}/tags/list")
    assert status == 404 or not json.loads(body).get("tags"), body


async def test_export_values_are_validated() -> None:
    with pytest.raises(ValueError, match="compression"):
        ImageExport("x", compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image name"):
        ImageExport("a,b")
    with pytest.raises(ValueError, match="at least one"):
        ImageExport([])
    export = ImageExport(["r/a:1", "r/b:2"], push=True, store=False, extra_attrs={"name-canonical": "true"})
    assert dict(export.attrs) == {
        "name": "r/a:1,r/b:2",
        "push": "true",
        "store": "false",
        "name-canonical": "true",
    }


# --------------------------------------------------------------------------- auth


def _write_docker_config(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_push_with_credentials_from_docker_config(
    buildkit_daemon: BuildkitDaemon, buildkit_auth_registry: Registry, tmp_path: Path
) -> None:
    assert buildkit_auth_registry.auth is not None
    user, password = buildkit_auth_registry.auth
    config = _write_docker_config(
        tmp_path / "docker", {"auths": {buildkit_auth_registry.host: {"auth": _basic(user, password)}}}
    )
    ref = f"{buildkit_auth_registry.host}/private/app:v1"
    marker = uuid.uuid4().hex
    async with llblib_async.connect(buildkit_daemon.address) as client:
        result = await client.solve(
            _app_state(marker),
            exports=[ImageExport(ref, push=True, insecure=True)],
            attachables=[DockerAuthProvider(config)],
        )
    digest, _, pushed = await pull_manifest(
        buildkit_auth_registry, "private/app", "v1", auth=(user, password)
    )
    assert digest == result.exporter_response["containerimage.digest"]
    assert pushed["config"]["Labels"]["org.example.marker"] == marker


@pytest.mark.parametrize("how", ["anonymous", "wrong-password"])
async def test_push_without_valid_credentials_fails(
    buildkit_daemon: BuildkitDaemon, buildkit_auth_registry: Registry, tmp_path: Path, how: str
) -> None:
    attachables = []
    if how == "wrong-password":
        config = _write_docker_config(
            tmp_path / "docker", {"auths": {buildkit_auth_registry.host: {"auth": _basic("llblib", "wrong")}}}
        )
        attachables.append(DockerAuthProvider(config))
    ref = f"{buildkit_auth_registry.host}/private/denied:{how}"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        with pytest.raises(llblib_async.SolveError) as err:
            await asyncio.wait_for(
                client.solve(
                    _app_state(uuid.uuid4().hex),
                    exports=[ImageExport(ref, push=True, insecure=True)],
                    attachables=attachables,
                ),
                timeout=120,
            )
    assert f"failed to push {ref}" in str(err.value)
    assert "401 Unauthorized" in str(err.value)


async def test_docker_config_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write_docker_config(
        tmp_path / "docker",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": _basic("hubuser", "hubpass")},
                "https://old.example.com/v1/": {"username": "u", "password": "p"},
                "token.example.com": {"identitytoken": "id-token"},
                "bad.example.com": {"auth": "!!!"},
            },
            "credHelpers": {"helped.example.com": "llblibtest"},
        },
    )
    helper = tmp_path / "bin" / "docker-credential-llblibtest"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'if [ "$host" = helped.example.com ]; then\n'
        '  echo \'{"ServerURL":"helped.example.com","Username":"helper-user","Secret":"helper-secret"}\'\n'
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    provider = DockerAuthProvider(config, credentials={"static.example.com": ("s", "t")})
    assert await provider.lookup("registry-1.docker.io") == ("hubuser", "hubpass")
    assert await provider.lookup("old.example.com") == ("u", "p")
    assert await provider.lookup("token.example.com") == ("", "id-token")
    assert await provider.lookup("helped.example.com") == ("helper-user", "helper-secret")
    assert await provider.lookup("static.example.com") == ("s", "t")
    assert await provider.lookup("unknown.example.com") == ("", "")
    with pytest.raises(AuthConfigError, match="base64"):
        await provider.lookup("bad.example.com")
    assert await DockerAuthProvider(tmp_path / "missing.json").lookup("registry-1.docker.io") == ("", "")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert await DockerAuthProvider().lookup("old.example.com") == ("u", "p")


async def test_estargz_layers_carry_their_table_of_contents(
    buildkit_daemon: BuildkitDaemon, buildkit_registry: Registry
) -> None:
    """``compression="estargz"``: OCI gzip layers annotated with the eStargz TOC digest and
    uncompressed size (what lazy-pulling snapshotters read)."""
    repo = "llblib-export/estargz"
    export = ImageExport(
        f"{buildkit_registry.host}/{repo}:v1",
        push=True,
        insecure=True,
        compression="estargz",
        force_compression=True,
        oci_mediatypes=True,
    )
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(_app_state(uuid.uuid4().hex), exports=[export])
    _, manifest, _ = await pull_manifest(buildkit_registry, repo, "v1")
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert layer["annotations"]["containerd.io/snapshot/stargz/toc.digest"].startswith("sha256:")
    assert int(layer["annotations"]["io.containers.estargz.uncompressed-size"]) > 0


async def test_basic_auth_registry_gets_credentials_not_tokens(
    buildkit_daemon: BuildkitDaemon, buildkit_auth_registry: Registry, tmp_path: Path
) -> None:
    """A basic-auth registry sends no bearer challenge: the daemon asks ``Credentials``
    and never the token authority (client-side tokens are only for token registries;
    see tests/test_registry_token_auth.py)."""
    assert buildkit_auth_registry.auth is not None
    user, password = buildkit_auth_registry.auth
    config = _write_docker_config(
        tmp_path / "docker", {"auths": {buildkit_auth_registry.host: {"auth": _basic(user, password)}}}
    )
    provider = DockerAuthProvider(config)
    repo = f"private/basic-{uuid.uuid4().hex[:12]}"
    async with llblib_async.connect(buildkit_daemon.address) as client:
        await client.solve(
            _app_state(uuid.uuid4().hex),
            exports=[ImageExport(f"{buildkit_auth_registry.host}/{repo}:v1", push=True, insecure=True)],
            attachables=[provider],
        )
    await pull_manifest(buildkit_auth_registry, repo, "v1", auth=(user, password))
    assert provider.calls["Credentials", buildkit_auth_registry.host] >= 1
    assert provider.calls["GetTokenAuthority", buildkit_auth_registry.host] == 0
    assert provider.calls["FetchToken", buildkit_auth_registry.host] == 0
