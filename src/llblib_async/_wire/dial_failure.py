"""Why a connection attempt failed, in words a user can act on."""

from __future__ import annotations

import socket
import ssl

__all__ = ["ConnectFailed", "describe_os_error"]


class ConnectFailed(Exception):
    """One connection attempt failed for ``reason``; the caller turns it into a public error.

    ``status`` is the HTTP status when the Docker daemon answered an upgrade with an error.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def describe_os_error(e: BaseException) -> str:
    """A short, human reason for a failed dial/handshake."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {e.verify_message or e.reason}"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, FileNotFoundError):
        return "no such socket file"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (nothing is listening)"
    if isinstance(e, PermissionError):
        return "permission denied (check the socket's owner/group)"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host: {e.strerror or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
