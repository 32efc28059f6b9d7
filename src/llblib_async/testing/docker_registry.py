"""A loopback OCI registry: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.

BuildKit treats ``127.0.0.1:PORT`` / ``localhost:PORT`` registries as plain HTTP by
default, so pushes and pulls need no TLS setup; pushing still wants the exporter attribute
``registry.insecure=true``.

Basic auth uses distribution's htpasswd backend, which accepts only bcrypt entries.  Those
are made with libcrypt (libxcrypt, ``libcrypt.so.1``: part of every Debian install, it
implements ``$2b$``) through ctypes - no apache2-utils (``htpasswd``), no ``bcrypt`` wheel,
and no dependency on Python's ``crypt`` module, which is removed in Python 3.13.

Token auth (``Registry.start(auth=..., token_auth=True)``) configures distribution's
``auth: token`` backend (``realm``, ``service``, ``issuer``, ``rootcertbundle``) against a
:class:`~llblib_async.testing.token_server.TokenServer` started alongside, in this
process, which knows the ``auth`` credentials: clients must fetch a bearer token there.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Self

from ..errors import DaemonUnreachableError
from . import _proc
from .prerequisite import PrerequisiteError
from .token_server import TokenServer

log = logging.getLogger("llblib_async.testing")

DOCKER_REGISTRY = "/usr/bin/docker-registry"
_START_ATTEMPTS = 5
_crypt_lock = threading.Lock()


def bcrypt_hash(password: str, rounds: int = 10) -> str:
    """A ``$2b$`` bcrypt hash of ``password`` made by the system's libcrypt."""
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
    except OSError as err:
        raise PrerequisiteError(
            "registry basic auth needs libcrypt.so.1 (bcrypt); `apt-get install -y libcrypt1`"
        ) from err
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    entropy = os.urandom(16)
    with _crypt_lock:  # crypt() returns a pointer to static storage
        salt = lib.crypt_gensalt(b"$2b$", rounds, entropy, len(entropy))
        hashed: bytes | None = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise PrerequisiteError("this system's libcrypt cannot make bcrypt ($2b$) hashes")
    return hashed.decode()


class Registry(_proc.StopOnExit):
    """A running private registry; create with :meth:`start`, end with :meth:`stop`.

    :attr:`host` is ``127.0.0.1:PORT`` (use it in image references), :attr:`url` the
    ``http://`` base URL, :attr:`auth` the ``(user, password)`` pair or None,
    :attr:`token_server` the :class:`TokenServer` of a token-auth registry (else None).
    """

    def __init__(
        self,
        *,
        workdir: Path,
        port: int,
        auth: tuple[str, str] | None,
        token_server: TokenServer | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.auth = auth
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.token_server = token_server
        self.htpasswd_path = workdir / "htpasswd" if auth and token_server is None else None
        self.log_path = workdir / "registry.log"
        self._process: _proc.DaemonProcess | None = None
        self._stopped = False

    @classmethod
    def start(
        cls, *, auth: tuple[str, str] | None = None, token_auth: bool = False, timeout: float = 30.0
    ) -> Self:
        """Start a registry on a free loopback port; return once ``GET /v2/`` answers.

        With ``auth=(user, password)`` it requires HTTP basic auth (htpasswd, bcrypt);
        with ``token_auth=True`` too, bearer tokens from a :class:`TokenServer` instead.
        """
        binary = _proc.require_program(DOCKER_REGISTRY, "docker-registry", "the test registry")
        if auth is not None and (":" in auth[0] or not auth[0]):
            raise ValueError("registry user names must be non-empty and contain no ':'")
        if token_auth and auth is None:
            raise ValueError("token_auth needs auth=(user, password) for the token server")
        _proc.reap_stale_instances()
        workdir = _proc.make_instance_dir("registry")
        last_error, last_url = "", "http://127.0.0.1"
        token_server: TokenServer | None = None
        try:
            if auth is not None and token_auth:
                token_server = TokenServer.start(workdir=workdir, users={auth[0]: auth[1]})
            elif auth is not None:
                (workdir / "htpasswd").write_text(f"{auth[0]}:{bcrypt_hash(auth[1])}\n")
            for _attempt in range(_START_ATTEMPTS):
                registry = cls(
                    workdir=workdir, port=_proc.free_tcp_port(), auth=auth, token_server=token_server
                )
                last_url = registry.url
                registry.config_path.write_text(registry._config())
                process = _proc.DaemonProcess(
                    [binary, "serve", str(registry.config_path)],
                    log_path=registry.log_path,
                    # distribution overrides its config from REGISTRY_* variables
                    env=_proc.child_env(drop_prefixes=("REGISTRY_",)),
                    cwd=workdir,
                )
                registry._process = process
                _proc.register_live(registry)
                started = time.monotonic()
                try:
                    _proc.poll_until(
                        registry._answers, process=process, timeout=timeout, what="docker-registry"
                    )
                except (ChildProcessError, TimeoutError) as err:
                    process.kill()
                    _proc.unregister_live(registry)
                    last_error = f"{err}; registry log:\n{registry.log_tail()}"
                    if "address already in use" in last_error:  # lost the free-port race: retry
                        registry.log_path.unlink(missing_ok=True)
                        continue
                    break
                log.info(
                    "registry (pid %d) ready at %s in %.2fs",
                    process.pid,
                    registry.url,
                    time.monotonic() - started,
                )
                return registry
        except BaseException:
            if token_server is not None:
                token_server.stop()
            _proc.cleanup_instance(workdir)
            raise
        if token_server is not None:
            token_server.stop()
        _proc.cleanup_instance(workdir)
        raise DaemonUnreachableError(last_url, last_error)

    def _config(self) -> str:
        # JSON is YAML: no quoting pitfalls with paths.
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.token_server is not None:
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.token_server.cert_path),
                }
            }
        elif self.htpasswd_path is not None:
            config["auth"] = {"htpasswd": {"realm": "llblib-async-test", "path": str(self.htpasswd_path)}}
        return json.dumps(config, indent=2) + "\n"

    def _answers(self) -> bool | None:
        status, headers, _ = _proc.http_get("/v2/", host=self.host, timeout=2.0)
        expected = 401 if self.auth else 200
        if status == expected and headers.get("docker-distribution-api-version") == "registry/2.0":
            return True
        return None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("registry not started")
        return self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.returncode() is None

    def log_tail(self, lines: int = 60) -> str:
        tail = _proc.log_tail(self.log_path, lines)
        if self.token_server is not None:
            tail += "\n--- token server requests:\n" + self.token_server.log_tail()
        return tail

    def kill(self) -> None:
        """SIGKILL the registry (an outage mid-push); :meth:`stop` still cleans up."""
        if self._process is not None:
            self._process.kill()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the registry and delete its storage.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._process is not None:
                self._process.terminate(timeout)
            if self.token_server is not None:
                self.token_server.stop()
        finally:
            errors = _proc.cleanup_instance(self.workdir, runc_roots=())
            _proc.unregister_live(self)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        kind = " (token auth)" if self.token_server else " (auth)" if self.auth else ""
        return f"<Registry {self.url}{kind}{' stopped' if self._stopped else ''}>"
