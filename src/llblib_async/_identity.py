"""Ids for builds and sessions, in the shape of BuildKit's ``identity.NewID``."""

from __future__ import annotations

import secrets

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A unique id: 25 base-36 characters from 128 random bits."""
    n = secrets.randbits(128)
    out = []
    for _ in range(25):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(out)
