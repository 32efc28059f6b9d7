"""SSH agent forwarding: ``llb.ssh_mount`` sockets backed by the client's ssh-agent (spec §3.4).

:class:`SSHAgent` serves ``moby.sshforward.v1.SSH`` with one or more agent sockets
keyed by id (``default`` for mounts naming none), by default ``$SSH_AUTH_SOCK``. Each
connection a build step makes to its socket is spliced to a new connection to the
agent, bytes relayed verbatim (see :mod:`.sockets`). Keys never leave the agent; the
agent is forwarded as is (Go's in-process read-only agent built from key files is not
offered: run ``ssh-agent`` and ``ssh-add`` them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .sockets import DEFAULT_ID, ForwardedSocket, SSHForwardService

__all__ = ["SSHAgent"]


class SSHAgent(SSHForwardService):
    """Forward ssh-agent sockets: ``SSHAgent()`` (``$SSH_AUTH_SOCK`` as ``default``),
    ``SSHAgent("/path/agent.sock")`` or ``SSHAgent({"default": ..., "deploy": ...})``.

    Raises ``ValueError`` when no socket is given and ``$SSH_AUTH_SOCK`` is unset.
    Combine with socket forwards by ``SSHAgent() | SocketForwards({...})``.
    """

    def __init__(
        self, agents: Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str] | None = None
    ) -> None:
        if agents is None:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise ValueError("SSHAgent: no agent socket given and $SSH_AUTH_SOCK is not set")
            agents = {DEFAULT_ID: sock}
        elif not isinstance(agents, Mapping):
            agents = {DEFAULT_ID: agents}
        super().__init__({fid: ForwardedSocket.unix(path) for fid, path in agents.items()})
