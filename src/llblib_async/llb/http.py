"""A file downloaded over HTTP(S) as a source: ``llb.http`` (Go's ``llb.HTTP``).

The identifier is the URL itself; the result is a filesystem holding one file
(named after the URL's last path element, or ``filename``).  The daemon
re-downloads only when the server says the content changed (ETag /
Last-Modified), and ``checksum`` pins the content: a mismatch fails the build.
"""

from __future__ import annotations

from collections.abc import Mapping

from .source import SourceOp, check_digest, file_attrs, source_state
from .state import State
from .vertex import Constraints, op_constraints

__all__ = ["SUPPORTED_HTTP_HEADERS", "http"]

SUPPORTED_HTTP_HEADERS = frozenset({"accept", "user-agent"})
"""The request headers the daemon lets a build set (it ignores any other ``http.header.*``)."""


def _ascii_text(value: str | bytes, what: str) -> str:
    # Attrs are proto strings; armored keys and signatures are ASCII anyway.
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{what} must be ASCII-armored text") from None
    return value


def http(
    url: str,
    *,
    checksum: str | None = None,
    filename: str | None = None,
    chmod: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    auth_header_secret: str | None = None,
    headers: Mapping[str, str] | None = None,
    pgp_pubkey: str | bytes | None = None,
    pgp_signature: str | bytes | None = None,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """The file at ``url`` (``http://`` or ``https://``), as a one-file filesystem (Go's ``llb.HTTP``).

    * ``checksum``: the content's digest (``sha256:…``); the build fails on a
      mismatch (``Checksum``).
    * ``filename``: name of the file in the result (``Filename``).
    * ``chmod``: its permission bits, e.g. ``0o755`` (``Chmod``; bits beyond
      ``0o777`` are dropped and ``0`` means "default" (0600), as in Go).
    * ``uid``/``gid``: its owner (``Chown``; 0 is the default and is not sent).
    * ``auth_header_secret``: name of a session secret sent as the
      ``Authorization`` header (``AuthHeaderSecret``).
    * ``headers``: request headers; the daemon supports ``Accept`` and
      ``User-Agent`` only, others raise :class:`ValueError` (``Header``).
      Names are sent lowercase, as Go does.
    * ``pgp_pubkey``/``pgp_signature``: verify an inline detached armored
      OpenPGP signature of the content (``VerifyPGPSignature``).
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"http source URL must start with http:// or https://, not {url!r}")
    attrs: dict[str, str] = {}
    caps: set[str] = set()
    if checksum is not None:
        attrs["http.checksum"] = check_digest(checksum, "http checksum")
        caps.add("source.http.checksum")
    file_info = file_attrs(filename, chmod, uid, gid)
    attrs.update(file_info)
    if "http.perm" in file_info:
        caps.add("source.http.perm")
    if "http.uid" in file_info or "http.gid" in file_info:
        caps.add("soruce.http.uidgid")  # sic: the daemon's cap id has this typo
    if auth_header_secret:
        attrs["http.authheadersecret"] = auth_header_secret
        caps.add("source.http.auth")
    if headers is not None:
        for key, value in headers.items():
            header = key.lower()
            if header not in SUPPORTED_HTTP_HEADERS:
                raise ValueError(f"unsupported http source header {key!r}: only Accept and User-Agent")
            if value:
                attrs["http.header." + header] = value
        caps.add("source.http.header")
    if pgp_pubkey is not None or pgp_signature is not None:
        if pgp_pubkey:
            attrs["http.sig.pubkey"] = _ascii_text(pgp_pubkey, "pgp_pubkey")
        if pgp_signature:
            attrs["http.sig.signature"] = _ascii_text(pgp_signature, "pgp_signature")
        caps.add("source.http.signatureverify")
    caps.add("source.http")
    vertex = SourceOp(
        identifier=url,
        attrs=tuple(sorted(attrs.items())),
        caps=frozenset(caps),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return source_state(vertex)
