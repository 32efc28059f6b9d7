"""Ed25519 (RFC 8032, section 5.1) for the session's registry token authority.

BuildKit's daemon checks that a session which answers ``Auth/GetTokenAuthority`` holds the
private key of the public key it gave, by asking it to sign a random payload
(``VerifyTokenAuthority``).  That needs Ed25519 signatures.

:func:`public_key`, :func:`sign` and :func:`verify` use the ``cryptography`` package
(OpenSSL: constant-time, ~50x faster) when it is installed -- ``pip install
llblib-async[crypto]`` -- and otherwise the pure-Python implementation below
(:func:`python_public_key`, :func:`python_sign`, :func:`python_verify`), so that
llblib-async keeps working with no compiled dependency.  :data:`BACKEND` says which
one is in use (``"cryptography"`` or ``"python"``).  Both give byte-identical keys
and signatures (Ed25519 signing is deterministic); the tests check both against the
RFC 8032 vectors and against each other.

The fallback implements the algorithm with Python integers, after the structure of
RFC 8032's own reference code (section 6):

* the curve is the twisted Edwards curve ``-x^2 + y^2 = 1 + d*x^2*y^2`` over GF(p),
  ``p = 2^255 - 19``; points are kept in extended homogeneous coordinates
  ``(X, Y, Z, T)`` with ``x = X/Z``, ``y = Y/Z``, ``x*y = T/Z`` (section 5.1.4), so adding
  needs no field inversion;
* the base point ``B`` has ``y = 4/5`` and an even ``x``; ``L`` is its prime order;
* a 32-byte *seed* (what RFC 8032 calls the private key, and what Go's
  ``ed25519.NewKeyFromSeed`` takes) is hashed with SHA-512: the clamped first half is the
  secret scalar ``a``, the second half the nonce prefix (section 5.1.5);
* signing is deterministic (section 5.1.6); verification checks ``[S]B = R + [k]A``
  (section 5.1.7, the cofactorless equation, like Go's ``crypto/ed25519``).

The fallback is not constant-time: Python integers leak timing.  That is acceptable here - the keys are
derived per session from a per-daemon salt and a random per-client seed, they only prove
"this session is the one that gave that public key", and they never leave the process -
but do not use this module for long-lived secrets.  It is tested against the RFC 8032
section 7.1 vectors and against OpenSSL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal

__all__ = [
    "BACKEND",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "public_key",
    "python_public_key",
    "python_sign",
    "python_verify",
    "sign",
    "verify",
]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

#: The field prime.
_P = 2**255 - 19
#: The order of the base point (a prime).
_L = 2**252 + 27742317777372353535851937790883648493
#: The curve constant ``d = -121665/121666``.
_D = -121665 * pow(121666, _P - 2, _P) % _P
#: A square root of -1 (used when recovering x from y).
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
_IDENTITY: _Point = (0, 1, 1, 0)


def _inverse(x: int) -> int:
    return pow(x, _P - 2, _P)  # Fermat: x^(p-2) = 1/x for x != 0


def _add(p: _Point, q: _Point) -> _Point:
    """Point addition (RFC 8032 section 5.1.4; complete: it also doubles)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: _Point) -> _Point:
    """``[scalar]point`` by double-and-add."""
    result = _IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(p: _Point, q: _Point) -> bool:
    # x1/z1 == x2/z2  <=>  x1*z2 == x2*z1 (and the same for y)
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    """The x with ``x mod 2 == sign`` on the curve at ``y`` (section 5.1.3), or None."""
    if y >= _P:
        return None
    x2 = (y * y - 1) * _inverse(_D * y * y + 1) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)  # a square root candidate, since p = 5 (mod 8)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None  # x2 is not a square: not a point
    if x & 1 != sign:
        x = _P - x
    return x


def _encode(point: _Point) -> bytes:
    """32 bytes: ``y`` little-endian with the low bit of ``x`` in the top bit (5.1.2)."""
    z_inv = _inverse(point[2])
    x, y = point[0] * z_inv % _P, point[1] * z_inv % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(data: bytes) -> _Point | None:
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _base_point() -> _Point:
    y = 4 * _inverse(5) % _P
    x = _recover_x(y, 0)
    assert x is not None
    return (x, y, 1, x * y % _P)


_BASE = _base_point()


def _hash_int(*parts: bytes) -> int:
    """SHA-512 of the concatenation, as a little-endian integer modulo L."""
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % _L


def _expand(seed: bytes) -> tuple[int, bytes]:
    """``(secret scalar a, nonce prefix)`` of a 32-byte seed (section 5.1.5)."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, not {len(seed)}")
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8  # clear the 3 low bits and bit 255 ...
    a |= 1 << 254  # ... and set bit 254
    return a, digest[32:]


def python_public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed (Go: ``NewKeyFromSeed(seed).Public()``)."""
    a, _ = _expand(seed)
    return _encode(_multiply(a, _BASE))


def python_sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature ``R || S`` of ``message`` (section 5.1.6)."""
    a, prefix = _expand(seed)
    public = _encode(_multiply(a, _BASE))
    r = _hash_int(prefix, message)
    encoded_r = _encode(_multiply(r, _BASE))
    s = (r + _hash_int(encoded_r, public, message) * a) % _L
    return encoded_r + s.to_bytes(32, "little")


def python_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid signature of ``message`` by ``public`` (5.1.7)."""
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    a_point = _decode(public)
    r_point = _decode(signature[:32])
    if a_point is None or r_point is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:  # non-canonical S: malleable, refused
        return False
    k = _hash_int(signature[:32], public, message)
    return _equal(_multiply(s, _BASE), _add(r_point, _multiply(k, a_point)))


# --------------------------------------------------------------------------- cryptography


def _check_seed(seed: bytes) -> None:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, not {len(seed)}")


def _openssl() -> (
    tuple[Callable[[bytes], bytes], Callable[[bytes, bytes], bytes], Callable[[bytes, bytes, bytes], bool]]
    | None
):
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:
        return None

    def openssl_public_key(seed: bytes) -> bytes:
        _check_seed(seed)
        return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()

    def openssl_sign(seed: bytes, message: bytes) -> bytes:
        _check_seed(seed)
        return Ed25519PrivateKey.from_private_bytes(seed).sign(message)

    def openssl_verify(public: bytes, message: bytes, signature: bytes) -> bool:
        if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    return openssl_public_key, openssl_sign, openssl_verify


_chosen = _openssl()
#: Which implementation :func:`public_key`, :func:`sign` and :func:`verify` use.
BACKEND: Literal["cryptography", "python"] = "python" if _chosen is None else "cryptography"
public_key, sign, verify = _chosen or (python_public_key, python_sign, python_verify)
