"""Client-side registry tokens (Go's ``authprovider``) against a token-auth loopback registry.

Offline: the pure-Python Ed25519 against the RFC 8032 section 7.1 vectors and OpenSSL, the
token authority key derivation, and the session ``Auth`` service played by a stub.  Live:
pushes to the ``buildkit_token_registry`` fixture (distribution with ``auth: token`` and a token
server in this process that records which process asked for each token) through a real
buildkitd, showing that with :class:`~llblib_async.DockerAuthProvider` *this*
process fetches the token and the daemon never asks for the password, that
``BUILDKIT_NO_CLIENT_TOKEN=1`` hands token fetching back to the daemon, and that a wrong
password fails the build with an error naming the registry.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import llblib_async
import llblib_async.attachables.auth
from llblib_async import llb
from llblib_async._pb.moby.filesync import v1 as auth_pb
from llblib_async.attachables import _ed25519
from llblib_async.attachables.auth import NO_CLIENT_TOKEN_ENV, DockerAuthProvider
from llblib_async.errors import TokenFetchError
from llblib_async.exporters import ImageExport
from llblib_async.testing import BuildkitDaemon
from llblib_async.testing.attachable_server import serve_attachable
from llblib_async.testing.docker_registry import Registry
from llblib_async.testing.token_server import TokenServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

SOLVE_TIMEOUT = 300.0
HTTP_TIMEOUT = 30.0
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

# RFC 8032 section 7.1: (secret key = seed, public key, message, signature), all hex.
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST 3",
    ),
    pytest.param(
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1e355f6c5"
        "0544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d658675fc6ea534e0"
        "810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82"
        "d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e06203b33890cc9b832f79ef80560ccb9"
        "a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7aff6f6c9"
        "4fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5"
        "d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88"
        "425de6bde1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
        "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80"
        "c3414a8d0859dc65a46128bab27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae078"
        "4504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9"
        "b47acdb751fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
        "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc"
        "82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7984a74d371459867"
        "80fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e488acba6b965610b5480109c8"
        "b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
        "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041e989f791"
        "4f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45"
        "a96768d40fd9d03412c091c6315cf4fde7cb68606937380db2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac"
        "86aba41c0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0",
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
        id="TEST 1024",
    ),
    pytest.param(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        id="TEST SHA(abc)",
    ),
]


# --------------------------------------------------------------------------- Ed25519


class _Ed25519(NamedTuple):
    public_key: Callable[[bytes], bytes]
    sign: Callable[[bytes, bytes], bytes]
    verify: Callable[[bytes, bytes, bytes], bool]


def _openssl_backend() -> _Ed25519:
    # The module picks cryptography when it is installed; the test environment has it.
    assert _ed25519.BACKEND == "cryptography", "the test environment installs cryptography"
    return _Ed25519(_ed25519.public_key, _ed25519.sign, _ed25519.verify)


ED25519_BACKENDS = {
    "python": lambda: _Ed25519(_ed25519.python_public_key, _ed25519.python_sign, _ed25519.python_verify),
    "cryptography": _openssl_backend,
}


@pytest.fixture(params=sorted(ED25519_BACKENDS))
def ed25519(request: pytest.FixtureRequest) -> _Ed25519:
    """Both Ed25519 implementations: OpenSSL through cryptography, and the fallback."""
    return ED25519_BACKENDS[request.param]()


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
async def test_ed25519_rfc8032_vectors(
    ed25519: _Ed25519, seed: str, public: str, message: str, signature: str
) -> None:
    sk, pk, msg, sig = (bytes.fromhex(x) for x in (seed, public, message, signature))
    assert ed25519.public_key(sk) == pk
    assert ed25519.sign(sk, msg) == sig
    assert ed25519.verify(pk, msg, sig)
    assert not ed25519.verify(pk, msg + b"x", sig)
    assert not ed25519.verify(pk, msg, sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not ed25519.verify(pk, msg, bytes([sig[0] ^ 1]) + sig[1:])


async def test_ed25519_rejects_malformed_input(ed25519: _Ed25519) -> None:
    seed = bytes(range(32))
    pk, sig = ed25519.public_key(seed), ed25519.sign(seed, b"m")
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.public_key(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519.sign(b"short", b"m")
    assert not ed25519.verify(pk[:31], b"m", sig)
    assert not ed25519.verify(pk, b"m", sig[:63])
    # S >= L (a malleated signature: S + L) is refused
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    assert not ed25519.verify(pk, b"m", sig[:32] + s.to_bytes(32, "little"))
    # y >= p is not a canonical point encoding
    assert not ed25519.verify(b"\xff" * 31 + b"\x7f", b"m", sig)


async def test_ed25519_backends_give_the_same_keys_and_signatures() -> None:
    python, openssl = ED25519_BACKENDS["python"](), ED25519_BACKENDS["cryptography"]()
    for i in range(8):
        seed, message = os.urandom(32), os.urandom(97 * i)
        assert python.public_key(seed) == openssl.public_key(seed)
        signature = python.sign(seed, message)
        assert signature == openssl.sign(seed, message)
        assert python.verify(python.public_key(seed), message, signature)
        assert openssl.verify(openssl.public_key(seed), message, signature)


async def test_ed25519_falls_back_to_python_without_cryptography() -> None:
    """Without the cryptography package the module uses its own implementation."""
    code = (
        "import sys; sys.modules['cryptography'] = None\n"  # makes `import cryptography` fail
        "from llblib_async.attachables import _ed25519 as e\n"
        "assert e.BACKEND == 'python', e.BACKEND\n"
        "assert e.sign is e.python_sign and e.verify is e.python_verify\n"
        "print(e.sign(bytes(32), b'm').hex())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert bytes.fromhex(out.decode().strip()) == _ed25519.sign(bytes(32), b"m")


async def test_ed25519_matches_openssl(ed25519: _Ed25519, tmp_path: Path) -> None:
    """Random seeds: our public keys and signatures equal OpenSSL's."""
    for i in range(3):
        seed, message = os.urandom(32), os.urandom(1 + 40 * i)  # openssl 3.0 refuses empty input
        # PKCS#8 for an Ed25519 seed (RFC 8410): a fixed prefix, then the 32 bytes
        der = bytes.fromhex("302e020100300506032b657004220420") + seed
        key = tmp_path / f"key{i}.pem"
        key.write_text(
            "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PRIVATE KEY-----\n"
        )
        (tmp_path / "msg").write_bytes(message)
        openssl_sig = await asyncio.to_thread(
            _openssl, "pkeyutl", "-sign", "-rawin", "-inkey", str(key), "-in", str(tmp_path / "msg")
        )
        openssl_pub = await asyncio.to_thread(_openssl, "pkey", "-in", str(key), "-pubout", "-outform", "DER")
        assert ed25519.public_key(seed) == openssl_pub[-32:]
        assert ed25519.sign(seed, message) == openssl_sig


def _openssl(*args: str) -> bytes:
    done = subprocess.run(["/usr/bin/openssl", *args], capture_output=True, timeout=120, check=True)
    return done.stdout


# --------------------------------------------------------------------------- the Auth service, offline


@asynccontextmanager
async def _serve(tmp_path: Path, provider: DockerAuthProvider) -> AsyncIterator[auth_pb.AuthStub]:
    """The attachable on a plain grpclib server; a stub plays the daemon."""
    async with serve_attachable(provider, tmp_path / "grpc.sock") as channel:
        yield auth_pb.AuthStub(channel)


async def test_token_authority_keys_follow_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_CLIENT_TOKEN_ENV, raising=False)
    salt = os.urandom(32)
    provider = DockerAuthProvider(tmp_path / "none.json", credentials={"reg.example": ("u", "p")})
    async with _serve(tmp_path, provider) as stub:
        first = await stub.get_token_authority(
            auth_pb.GetTokenAuthorityRequest(host="reg.example", salt=salt)
        )
        again = await stub.get_token_authority(
            auth_pb.GetTokenAuthorityRequest(host="reg.example", salt=salt)
        )
        other_salt = await stub.get_token_authority(
            auth_pb.GetTokenAuthorityRequest(host="reg.example", salt=os.urandom(32))
        )
        assert len(first.public_key) == 32
        assert first.public_key == again.public_key != other_salt.public_key
        # VerifyTokenAuthority: NaCl sign format (signature || payload) the daemon opens with the key
        payload = os.urandom(32)
        signed = await stub.verify_token_authority(
            auth_pb.VerifyTokenAuthorityRequest(host="reg.example", payload=payload, salt=salt)
        )
        assert signed.signed[64:] == payload
        assert _ed25519.verify(first.public_key, payload, signed.signed[:64])
        # anonymous hosts: HMAC(salt) without the per-client seed, the same for every client
        anonymous = await stub.get_token_authority(
            auth_pb.GetTokenAuthorityRequest(host="anon.example", salt=salt)
        )
        expected_seed = hmac.new(salt, digestmod=hashlib.sha256).digest()
        assert anonymous.public_key == _ed25519.public_key(expected_seed)
        # BUILDKIT_NO_CLIENT_TOKEN: UNAVAILABLE, so the daemon falls back to Credentials
        monkeypatch.setenv(NO_CLIENT_TOKEN_ENV, "1")
        with pytest.raises(GRPCError) as err:
            await stub.get_token_authority(auth_pb.GetTokenAuthorityRequest(host="reg.example", salt=salt))
        assert err.value.status == Status.UNAVAILABLE
    # the per-client seed: another provider with the same credentials has another key
    assert provider.token_authority_key("reg.example", salt, True) != DockerAuthProvider(
        credentials={"reg.example": ("u", "p")}
    ).token_authority_key("reg.example", salt, True)
    assert provider.calls["GetTokenAuthority", "reg.example"] == 4
    assert provider.calls["VerifyTokenAuthority", "reg.example"] == 1
    assert provider.calls["Credentials", "reg.example"] == 0


async def test_fetch_token_from_the_realm(
    buildkit_token_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FetchToken as the daemon asks it: OAuth POST, GET fallback, anonymous GET, bad password."""
    server = _token_server(buildkit_token_registry)
    assert buildkit_token_registry.auth is not None
    user, password = buildkit_token_registry.auth
    host = buildkit_token_registry.host
    repo = f"fetch/{uuid.uuid4().hex}"
    scopes = [f"repository:{repo}:pull,push"]
    good = DockerAuthProvider(tmp_path / "none.json", credentials={host: (user, password)})
    async with _serve(tmp_path, good) as stub:
        answer = await stub.fetch_token(
            auth_pb.FetchTokenRequest(
                client_id="buildkit-client",
                host=host,
                realm=server.realm,
                service=server.service,
                scopes=scopes,
            )
        )
    assert answer.token.count(".") == 2
    assert answer.expires_in == 300
    assert answer.issued_at > 0
    claims = json.loads(base64.urlsafe_b64decode(answer.token.split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
    [post] = server.requests_for(repo)
    assert (post.method, post.user, post.authenticated, post.client_id) == (
        "POST",
        user,
        True,
        "buildkit-client",
    )
    assert post.peer_pid == os.getpid()

    # a token server without the OAuth form: 404 on POST, then GET with basic auth
    monkeypatch.setattr(server, "oauth_post", False)
    token, _, _ = await good.fetch_token(host, server.realm, server.service, scopes)
    assert token
    assert [(r.method, r.status) for r in server.requests_for(repo)[1:]] == [("POST", 404), ("GET", 200)]
    monkeypatch.setattr(server, "oauth_post", True)

    anonymous = DockerAuthProvider(tmp_path / "none.json")
    token, _, _ = await anonymous.fetch_token(host, server.realm, server.service, scopes)
    last = server.requests_for(repo)[-1]
    assert (last.method, last.user, last.status) == ("GET", None, 200)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["access"] == []

    wrong = DockerAuthProvider(tmp_path / "none.json", credentials={host: (user, "wrong")})
    async with _serve(tmp_path, wrong) as stub:
        with pytest.raises(GRPCError) as grpc_err:
            await stub.fetch_token(
                auth_pb.FetchTokenRequest(
                    host=host, realm=server.realm, service=server.service, scopes=scopes
                )
            )
    assert grpc_err.value.status == Status.UNKNOWN
    assert host in str(grpc_err.value.message)
    assert "401" in str(grpc_err.value.message)
    # the OAuth POST got 401, so the GET with basic auth was tried too (Go's fallback)
    assert [(r.method, r.status) for r in server.requests_for(repo)[-2:]] == [("POST", 401), ("GET", 401)]


async def test_fetch_token_refuses_unsafe_realms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = "reg.example:5000"
    provider = DockerAuthProvider(tmp_path / "none.json", credentials={host: ("u", "p")})
    for realm in ("file:///etc/passwd", "ftp://auth.example/token", "http://auth.example/token"):
        with pytest.raises(TokenFetchError, match=r"reg\.example:5000") as err:
            await provider.fetch_token(host, realm, "svc", [])
        assert err.value.status == 0
    # plain http is accepted on loopback, on the registry's own host name (the daemon talks
    # HTTP to it), and anywhere with insecure_token_realms=True
    asked: list[str] = []

    async def fake_get(request: Any) -> dict[str, Any]:
        asked.append(request.realm)
        return {"token": "t"}

    monkeypatch.setattr(llblib_async.attachables.auth, "_fetch_with_get", fake_get)
    anonymous = DockerAuthProvider(tmp_path / "none.json")
    for realm in ("http://127.0.0.1:9/token", "http://reg.example/token", "https://auth.example/token"):
        assert await anonymous.fetch_token(host, realm, "svc", []) == ("t", 60, 0)
    with pytest.raises(TokenFetchError, match="refusing a plain-http token server"):
        await anonymous.fetch_token(host, "http://auth.example/token", "svc", [])
    insecure = DockerAuthProvider(tmp_path / "none.json", insecure_token_realms=True)
    assert await insecure.fetch_token(host, "http://auth.example/token", "svc", []) == ("t", 60, 0)
    assert len(asked) == 4


# --------------------------------------------------------------------------- live pushes


def _token_server(registry: Registry) -> TokenServer:
    assert registry.token_server is not None
    return registry.token_server


def _docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def _state(marker: str) -> llb.State:
    return llb.scratch().with_platform(llb.default_platform()).mkfile("/marker", f"{marker}\n")


def _get(url: str, token: str, accept: str = "") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if accept:
        headers["Accept"] = accept
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=HTTP_TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def _pushed_manifest(registry: Registry, repo: str, tag: str) -> tuple[str, dict[str, Any]]:
    """``(digest, manifest)`` read back with a token minted directly (no token request)."""
    server = _token_server(registry)
    token = str(server.issue("test-reader", (f"repository:{repo}:pull",), granted=True)["token"])
    status, body = await asyncio.to_thread(
        _get, f"{registry.url}/v2/{repo}/manifests/{tag}", token, MANIFEST_ACCEPT
    )
    assert status == 200, body
    return "sha256:" + hashlib.sha256(body).hexdigest(), json.loads(body)


async def _push(
    daemon: BuildkitDaemon, ref: str, provider: DockerAuthProvider, marker: str
) -> dict[str, str]:
    async with llblib_async.connect(daemon.address) as client:
        result = await asyncio.wait_for(
            client.solve(
                _state(marker), exports=[ImageExport(ref, push=True, insecure=True)], attachables=[provider]
            ),
            timeout=SOLVE_TIMEOUT,
        )
    return dict(result.exporter_response)


async def test_push_fetches_the_token_client_side(
    buildkit_daemon: BuildkitDaemon,
    buildkit_token_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(NO_CLIENT_TOKEN_ENV, raising=False)
    assert buildkit_token_registry.auth is not None
    user, password = buildkit_token_registry.auth
    host = buildkit_token_registry.host
    provider = DockerAuthProvider(_docker_config(tmp_path / "docker", host, user, password))
    repo = f"token/client-{uuid.uuid4().hex[:12]}"
    response = await _push(buildkit_daemon, f"{host}/{repo}:v1", provider, repo)

    digest, manifest = await _pushed_manifest(buildkit_token_registry, repo, "v1")
    assert response["containerimage.digest"] == digest
    assert len(manifest["layers"]) == 1
    # the daemon got a token authority and asked us for tokens, never for the password
    assert provider.calls["GetTokenAuthority", host] >= 1
    assert provider.calls["FetchToken", host] >= 1
    assert provider.calls["Credentials", host] == 0
    # every token for this push was fetched with the credentials by this very process
    requests = _token_server(buildkit_token_registry).requests_for(repo)
    assert requests, "no token request for the pushed repository"
    assert all(r.peer_pid == os.getpid() for r in requests), requests
    assert all(r.user == user and r.authenticated and r.status == 200 for r in requests), requests
    assert all(r.user_agent.startswith("llblib-async") for r in requests), requests
    assert any("push" in scope for r in requests for scope in r.scopes)


async def test_no_client_token_lets_the_daemon_fetch_tokens(
    buildkit_daemon: BuildkitDaemon,
    buildkit_token_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(NO_CLIENT_TOKEN_ENV, "1")
    assert buildkit_token_registry.auth is not None
    user, password = buildkit_token_registry.auth
    host = buildkit_token_registry.host
    provider = DockerAuthProvider(_docker_config(tmp_path / "docker", host, user, password))
    repo = f"token/daemon-{uuid.uuid4().hex[:12]}"
    response = await _push(buildkit_daemon, f"{host}/{repo}:v1", provider, repo)

    digest, _ = await _pushed_manifest(buildkit_token_registry, repo, "v1")
    assert response["containerimage.digest"] == digest
    assert provider.calls["GetTokenAuthority", host] >= 1  # answered UNAVAILABLE
    assert provider.calls["Credentials", host] >= 1
    assert provider.calls["FetchToken", host] == 0
    requests = _token_server(buildkit_token_registry).requests_for(repo)
    assert requests, "no token request for the pushed repository"
    assert all(r.peer_pid == buildkit_daemon.pid for r in requests), requests
    assert any(r.user == user and r.authenticated and r.status == 200 for r in requests), requests


async def test_wrong_password_fails_the_push_naming_the_registry(
    buildkit_daemon: BuildkitDaemon,
    buildkit_token_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(NO_CLIENT_TOKEN_ENV, raising=False)
    assert buildkit_token_registry.auth is not None
    user, _ = buildkit_token_registry.auth
    host = buildkit_token_registry.host
    provider = DockerAuthProvider(_docker_config(tmp_path / "docker", host, user, "wrong-password"))
    repo = f"token/denied-{uuid.uuid4().hex[:12]}"
    with pytest.raises(llblib_async.SolveError) as err:
        await _push(buildkit_daemon, f"{host}/{repo}:v1", provider, repo)
    message = str(err.value)
    assert f"failed to fetch token for {host}" in message, message
    assert "401" in message, message
    assert provider.calls["FetchToken", host] >= 1
    assert provider.calls["Credentials", host] == 0
    requests = _token_server(buildkit_token_registry).requests_for(repo)
    assert requests
    assert all(r.peer_pid == os.getpid() and r.status == 401 and not r.authenticated for r in requests), (
        requests
    )
