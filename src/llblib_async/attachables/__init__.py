"""Session attachables beyond local dirs and exports: secrets, SSH agents, socket forwards.

Pass them to ``client.solve(..., attachables=[...])``::

    secrets = Secrets({"token": Secret.from_env("API_TOKEN")})
    forwards = SSHAgent() | SocketForwards({"db": "tcp://127.0.0.1:5432"})
    await client.solve(state, attachables=[secrets, forwards])

Only one SSH-forward service can be served per session: combine agents and sockets
with ``|``.
"""

from .secrets import MAX_SECRET_SIZE, Secret, SecretError, Secrets
from .sockets import ForwardedSocket, SocketForwards, SSHForwardService
from .ssh import SSHAgent

__all__ = [
    "MAX_SECRET_SIZE",
    "ForwardedSocket",
    "SSHAgent",
    "SSHForwardService",
    "Secret",
    "SecretError",
    "Secrets",
    "SocketForwards",
]
