"""Session attachables: every service the client serves to the daemon inside a session.

:class:`Attachable` (:mod:`.attachable`) is what they all are. The ones you pass in::

    secrets = Secrets({"token": Secret.from_env("API_TOKEN")})
    forwards = SSHAgent() | SocketForwards({"db": "tcp://127.0.0.1:5432"})
    await client.solve(state, attachables=[secrets, forwards, DockerAuthProvider()])

* :mod:`.secrets` -- :class:`Secrets`: secret mounts and git/http auth secrets;
* :mod:`.sockets`, :mod:`.ssh` -- :class:`SocketForwards`, :class:`SSHAgent`: sockets
  forwarded into build steps (only one SSH-forward service per session: combine them
  with ``|``);
* :mod:`.auth` -- :class:`DockerAuthProvider`: registry credentials and tokens.

And the ones every session serves by itself (:class:`~llblib_async.Session` wires
them to its requests):

* :mod:`.filesync` -- local directories to the daemon (``FileSync``);
* :mod:`.filesend` -- exporter output back to the client (``FileSend``), and the
  export targets;
* :mod:`.content_store` -- local cache and OCI layout directories (containerd ``Content``).
"""

from .attachable import Attachable
from .auth import DockerAuthProvider
from .secrets import MAX_SECRET_SIZE, Secret, Secrets
from .sockets import ForwardedSocket, SocketForwards, SSHForwardService
from .ssh import SSHAgent

__all__ = [
    "MAX_SECRET_SIZE",
    "Attachable",
    "DockerAuthProvider",
    "ForwardedSocket",
    "SSHAgent",
    "SSHForwardService",
    "Secret",
    "Secrets",
    "SocketForwards",
]
