"""Docker image reference normalization, a port of ``github.com/distribution/reference``.

Go's ``llb.Image`` runs ``ParseNormalizedNamed`` + ``TagNameOnly`` on the ref, so
``alpine`` becomes ``docker.io/library/alpine:latest`` inside the source
identifier.  The identifier is part of the op bytes, so the normalization must
match Go's character for character.
"""

from __future__ import annotations

import re

from ..errors import BuildKitError

__all__ = ["InvalidReferenceError", "normalize_image_ref"]

_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_PREFIX = "library/"
_DEFAULT_TAG = "latest"
_REPOSITORY_NAME_TOTAL_LENGTH_MAX = 255

# The grammar of distribution/reference regexp.go; re.ASCII because Go's \w is ASCII-only.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_ANY_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
# go-digest: only registered algorithms are accepted, each with its exact hex length.
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)


class InvalidReferenceError(BuildKitError, ValueError):
    """An image reference that Docker's reference grammar rejects.

    ``reference`` is the string as given, ``reason`` what is wrong with it.
    """

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


def _split_docker_domain(name: str) -> tuple[str, str]:
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        # A single element ("ubuntu", "ubuntu:22.04") is always a Docker Hub official image.
        return _DEFAULT_DOMAIN, _OFFICIAL_REPO_PREFIX + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == _LEGACY_DEFAULT_DOMAIN:
        domain, remote = _DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = _DEFAULT_DOMAIN, name
    if domain == _DEFAULT_DOMAIN and "/" not in remote:
        remote = _OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _check_digest(ref: str, digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LEN.get(algorithm)
    if expected is None:
        raise InvalidReferenceError(ref, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != expected or not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReferenceError(ref, "invalid checksum digest format")


def normalize_image_ref(ref: str) -> str:
    """Fully qualify a Docker image reference the way Go's ``llb.Image`` does.

    ``alpine`` → ``docker.io/library/alpine:latest``; ``user/app:1`` →
    ``docker.io/user/app:1``; ``ghcr.io/o/r@sha256:…`` is kept (a digest without a
    tag gets no ``:latest``).  Raises :class:`InvalidReferenceError` for anything
    the reference grammar rejects (uppercase repository, bad tag or digest, …).
    """
    if _IDENTIFIER_RE.fullmatch(ref):
        raise InvalidReferenceError(ref, "cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(ref)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReferenceError(ref, f"repository name ({remote}) must be lowercase")
    candidate = domain + "/" + remainder
    match = _REFERENCE_RE.fullmatch(candidate)
    if match is None:
        if not ref:
            raise InvalidReferenceError(ref, "repository name must have at least one component")
        if _REFERENCE_RE.fullmatch(candidate.lower()) is not None:
            raise InvalidReferenceError(ref, "repository name must be lowercase")
        raise InvalidReferenceError(ref, "invalid reference format")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    path = name_match.group(2) if name_match is not None else name
    if len(path) > _REPOSITORY_NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(ref, "repository name must not be more than 255 characters")
    if digest is not None:
        if not _ANY_DIGEST_RE.fullmatch(digest):
            raise InvalidReferenceError(ref, "invalid checksum digest format")
        _check_digest(ref, digest)
    out = name
    if tag:
        out += ":" + tag
    if digest:
        out += "@" + digest
    elif not tag:
        out += ":" + _DEFAULT_TAG
    return out
