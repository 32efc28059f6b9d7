"""TLS settings for ``tcp://`` daemon addresses."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

__all__ = ["TLSConfig"]


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings for ``tcp://`` addresses (buildctl's ``--tlscacert/--tlscert/--tlskey/--tlsservername``).

    ``ca_cert``: PEM CA bundle to verify the daemon with (default: the system store);
    ``cert``/``key``: client certificate and key (buildkitd started with ``--tlscacert``
    requires one); ``server_name``: name to verify the daemon's certificate against, when it
    differs from the host in the address.
    """

    ca_cert: str | os.PathLike[str] | None = None
    cert: str | os.PathLike[str] | None = None
    key: str | os.PathLike[str] | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("TLSConfig: key given without cert")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: verifies the server, offers the client cert, ALPN ``h2`` (gRPC needs it)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_cert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["h2"])
        return ctx
