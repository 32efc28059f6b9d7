"""The error of the test infrastructure: a prerequisite is missing."""

from __future__ import annotations

from ..errors import BuildKitError

__all__ = ["PrerequisiteError"]


class PrerequisiteError(BuildKitError, RuntimeError):
    """Something the test daemons need (Go, runc, root, a Debian package...) is missing.

    The message says how to install it.  The pytest plugin turns it into a failure of the
    fixture that needed it (never a skip).
    """
