"""A registry token server on 127.0.0.1, for distribution's ``auth: token`` (test fixture).

It implements the two ways a client asks for a bearer token (distribution's "Token
Authentication Specification" and "OAuth2 Token Authentication"):

* ``GET /token?service=…&scope=…`` with optional HTTP basic credentials;
* ``POST /token`` with the OAuth2 form ``grant_type=password`` (``username``,
  ``password``), ``service``, ``scope`` (space-separated), ``client_id``.

Valid credentials get every action they ask for on ``repository`` scopes; anonymous
requests get a token without access (the registry then refuses with ``401
insufficient_scope``); wrong credentials get ``401``.  Tokens are JWTs signed RS256 with a
throw-away RSA key whose self-signed certificate (made with the ``openssl`` CLI) is the
registry's ``rootcertbundle``; the JWT header carries that certificate in ``x5c``, which is
how distribution 2.8 finds the signing key (``registry/auth/token/token.go``).  Signing is
PKCS#1 v1.5 with Python integers: no crypto package needed.

Every request is recorded (:attr:`TokenServer.requests`) with the pid of the process that
sent it - found through ``/proc/net/tcp`` and the socket inodes in ``/proc/*/fd`` while the
connection is open - so tests can tell whether the client or the daemon fetched a token.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from . import _proc

log = logging.getLogger("llblib_async.testing")

OPENSSL = "/usr/bin/openssl"
TOKEN_LIFETIME = 300
# DER DigestInfo prefix of a SHA-256 hash (RFC 8017 section 9.2, note 1)
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request the token server answered.

    ``user`` is the user name sent (None: no credentials), ``authenticated`` whether the
    credentials were right, ``scopes`` the scopes asked for, ``peer_pid`` the process
    that sent the request (None when it could not be found), ``status`` the HTTP answer.
    """

    method: str
    user: str | None
    authenticated: bool
    service: str
    scopes: tuple[str, ...]
    client_id: str
    user_agent: str
    peer: tuple[str, int]
    peer_pid: int | None
    status: int

    def mentions(self, repository: str) -> bool:
        """Whether a scope of this request names ``repository``."""
        return any(_parse_scope(scope)[1] == repository for scope in self.scopes)


# --------------------------------------------------------------------------- RSA / JWT


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_sequence_integers(der: bytes) -> list[int]:
    """The INTEGERs of a DER ``SEQUENCE`` of INTEGERs (a PKCS#1 ``RSAPrivateKey``)."""

    def length(pos: int) -> tuple[int, int]:
        first = der[pos]
        if first < 0x80:
            return first, pos + 1
        count = first & 0x7F
        return int.from_bytes(der[pos + 1 : pos + 1 + count], "big"), pos + 1 + count

    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    size, pos = length(1)
    end = pos + size
    values = []
    while pos < end:
        if der[pos] != 0x02:
            raise ValueError("not a DER INTEGER")
        size, pos = length(pos + 1)
        values.append(int.from_bytes(der[pos : pos + size], "big", signed=True))
        pos += size
    return values


class _RsaKey:
    """An RSA private key able to make RS256 (PKCS#1 v1.5, SHA-256) signatures."""

    def __init__(self, pkcs1_der: bytes) -> None:
        _version, self.n, _e, self.d, *_ = _der_sequence_integers(pkcs1_der)
        self.size = (self.n.bit_length() + 7) // 8

    def sign_rs256(self, message: bytes) -> bytes:
        digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        padded = b"\x00\x01" + b"\xff" * (self.size - len(digest_info) - 3) + b"\x00" + digest_info
        return pow(int.from_bytes(padded, "big"), self.d, self.n).to_bytes(self.size, "big")


def _make_key_and_certificate(workdir: Path, subject: str) -> tuple[_RsaKey, Path, str]:
    """``(key, certificate PEM path, certificate DER in base64)`` made with ``openssl``."""
    openssl = _proc.require_program(OPENSSL, "openssl", "the registry token server")
    key_pem, cert_pem = workdir / "token-key.pem", workdir / "token-cert.pem"

    def run(*args: str) -> bytes:
        done = subprocess.run([openssl, *args], capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    run("req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2", "-subj", f"/CN={subject}",
        "-keyout", str(key_pem), "-out", str(cert_pem))  # fmt: skip
    key_der = run("rsa", "-in", str(key_pem), "-traditional", "-outform", "DER")
    cert_der = run("x509", "-in", str(cert_pem), "-outform", "DER")
    return _RsaKey(key_der), cert_pem, base64.b64encode(cert_der).decode()


def _parse_scope(scope: str) -> tuple[str, str, list[str]]:
    """``repository:name/x:pull,push`` → ``("repository", "name/x", ["pull", "push"])``."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, [a for a in actions.split(",") if a]


# --------------------------------------------------------------------------- peer processes


def _socket_inode(peer: tuple[str, int], server: tuple[str, int]) -> int | None:
    """Inode of the client end of a loopback TCP connection, from ``/proc/net/tcp``."""

    def hex_addr(addr: tuple[str, int]) -> str:
        ip = int.from_bytes(socket.inet_aton(addr[0]), sys.byteorder)
        return f"{ip:08X}:{addr[1]:04X}"

    local, remote = hex_addr(peer), hex_addr(server)
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == local and fields[2] == remote:
            return int(fields[9])
    return None


def _pid_of_socket(inode: int) -> int | None:
    """The process holding the socket ``inode`` (our own process is checked first)."""
    target = f"socket:[{inode}]"
    pids = [os.getpid()] + [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    for pid in pids:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    try:
                        if os.readlink(fd.path) == target:
                            return pid
                    except OSError:
                        continue
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------- the server


class TokenServer:
    """A running token server; create with :meth:`start`, end with :meth:`stop`.

    ``realm`` is its token URL, ``service``/``issuer`` what its tokens say (the
    registry's ``auth.token`` must be configured with the same values), ``cert_path`` the
    root certificate bundle for the registry.  ``oauth_post=False`` makes ``POST``
    answer 404, as registries without the OAuth2 form do.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        key: _RsaKey,
        cert_path: Path,
        cert_b64: str,
        service: str,
        issuer: str,
    ) -> None:
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.cert_path = cert_path
        self.oauth_post = True
        self._key = key
        self._cert_b64 = cert_b64
        self._requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._httpd.daemon_threads = True
        port = int(self._httpd.server_address[1])
        self.address: tuple[str, int] = ("127.0.0.1", port)
        self.realm = f"http://127.0.0.1:{port}/token"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"token-server-{port}", daemon=True
        )
        self._stopped = False

    @classmethod
    def start(
        cls,
        *,
        workdir: Path,
        users: Mapping[str, str],
        service: str = "llblib-test-registry",
        issuer: str = "llblib-test-token-issuer",
    ) -> Self:
        """Make a key and certificate in ``workdir`` and serve on a free loopback port."""
        key, cert_path, cert_b64 = _make_key_and_certificate(workdir, issuer)
        server = cls(
            users=users, key=key, cert_path=cert_path, cert_b64=cert_b64, service=service, issuer=issuer
        )
        server._thread.start()
        log.info("token server ready at %s", server.realm)
        return server

    @property
    def requests(self) -> list[TokenRequest]:
        """The requests answered so far (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, repository: str) -> list[TokenRequest]:
        """The requests whose scopes name ``repository``."""
        return [r for r in self.requests if r.mentions(repository)]

    def issue(self, subject: str, scopes: tuple[str, ...], *, granted: bool) -> dict[str, object]:
        """The JSON answer for a token request (``granted=False``: a token without access)."""
        now = int(time.time())
        access: dict[tuple[str, str], list[str]] = {}
        if granted:
            for scope in scopes:
                for one in scope.split():
                    kind, name, actions = _parse_scope(one)
                    if kind == "repository" and name:
                        merged = access.setdefault((kind, name), [])
                        merged.extend(a for a in actions if a not in merged)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [{"type": k, "name": n, "actions": a} for (k, n), a in access.items()],
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._cert_b64]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        token = f"{signing_input}.{_b64url(self._key.sign_rs256(signing_input.encode()))}"
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME, "issued_at": issued}

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)
        log.info(
            "token request %s from pid %s user=%r authenticated=%s scopes=%s -> %d",
            request.method,
            request.peer_pid,
            request.user,
            request.authenticated,
            " ".join(request.scopes),
            request.status,
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last requests, one a line (for failed-test reports)."""
        return "\n".join(
            f"{r.method} pid={r.peer_pid} user={r.user!r} ok={r.authenticated} status={r.status} "
            f"scopes={' '.join(r.scopes)} agent={r.user_agent!r}"
            for r in self.requests[-lines:]
        )

    def stop(self) -> None:
        """Stop serving.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=30)

    def __repr__(self) -> str:
        return f"<TokenServer {self.realm}{' stopped' if self._stopped else ''}>"


def _handler_class(server: TokenServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llblib-token-server"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("token server: " + format, *args)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            query = urllib.parse.parse_qs(url.query)
            user, password = self._basic_auth()
            self._answer(
                "GET", user, password, query.get("service", [""])[0], tuple(query.get("scope", [])), ""
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace")
            if urllib.parse.urlsplit(self.path).path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            form = urllib.parse.parse_qs(body)
            field = {k: v[0] for k, v in form.items()}
            if field.get("grant_type") != "password" and server.oauth_post:
                self._send(400, {"error": "unsupported_grant_type"})
                return
            scopes = tuple(field.get("scope", "").split())
            self._answer(
                "POST",
                field.get("username", ""),
                field.get("password", ""),
                field.get("service", ""),
                scopes,
                field.get("client_id", ""),
                refuse=404 if not server.oauth_post else 0,
            )

        def _basic_auth(self) -> tuple[str | None, str]:
            header = self.headers.get("Authorization") or ""
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return None, ""
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except ValueError:
                return "", ""
            return user, password

        def _answer(
            self,
            method: str,
            user: str | None,
            password: str,
            service: str,
            scopes: tuple[str, ...],
            client_id: str,
            *,
            refuse: int = 0,
        ) -> None:
            authenticated = (
                not refuse and user is not None and bool(password) and server.users.get(user) == password
            )
            answer: dict[str, object]
            if refuse:
                status, answer = refuse, {"errors": [{"code": "NOT_FOUND"}]}
            elif service != server.service:
                status, answer = 400, {"errors": [{"code": "INVALID_SERVICE", "message": service}]}
            elif user is not None and not authenticated:
                status, answer = 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
            else:
                status, answer = 200, server.issue(user or "", scopes, granted=authenticated)
            peer = (str(self.client_address[0]), int(self.client_address[1]))
            inode = _socket_inode(peer, server.address)
            server._record(
                TokenRequest(
                    method=method,
                    user=user,
                    authenticated=authenticated,
                    service=service,
                    scopes=scopes,
                    client_id=client_id,
                    user_agent=self.headers.get("User-Agent") or "",
                    peer=peer,
                    peer_pid=_pid_of_socket(inode) if inode is not None else None,
                    status=status,
                )
            )
            self._send(status, answer)

        def _send(self, status: int, answer: object) -> None:
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="llblib-token-server"')
            self.end_headers()
            self.wfile.write(body)

    return Handler
