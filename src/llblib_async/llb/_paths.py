"""Go's ``path`` package semantics (``Clean``, ``Join``) and client/llb's ``normalizePath``.

``posixpath.normpath`` is not a substitute: it keeps a leading ``//`` (POSIX
allows it) where Go collapses it, so paths — and therefore op bytes and digests —
would differ from Go's for such inputs.
"""

from __future__ import annotations


def clean(path: str) -> str:
    """Port of Go's ``path.Clean``: the shortest equivalent slash-separated path."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            # ".." at the root of a rooted path stays at the root.
            continue
        parts.append(comp)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def join(*elems: str) -> str:
    """Port of Go's ``path.Join``: joins the non-empty elements and cleans the result."""
    nonempty = [e for e in elems if e]
    if not nonempty:
        return ""
    return clean("/".join(nonempty))


def is_abs(path: str) -> bool:
    """Go's ``path.IsAbs``."""
    return path.startswith("/")


def resolve_dir(current: str, value: str) -> str:
    """The working dir after ``Dir(value)`` on a state whose dir is ``current`` (Go's ``dirf``).

    Absolute values are kept verbatim (Go does not clean them); relative ones are
    joined onto the current dir.
    """
    if is_abs(value):
        return value
    return join(current or "/", value)


def normalize_path(parent: str, path: str, *, keep_slash: bool) -> str:
    """Port of client/llb ``normalizePath``: absolute, cleaned, relative to ``parent``.

    With ``keep_slash`` (copy destinations) a trailing ``/`` or ``/.`` of the input
    is preserved, because it changes the meaning of a copy ("into this dir").
    """
    orig = path
    path = clean(path)
    if not is_abs(path):
        path = join("/", parent, path)
    if keep_slash:
        if orig.endswith("/") and not path.endswith("/"):
            path += "/"
        elif orig.endswith("/."):
            if path != "/":
                path += "/"
            path += "."
    return path


def copy_source_path(src_dir: str, path: str) -> str:
    """Port of ``fileActionCopy.sourcePath``: a copy source resolved against the source state's dir."""
    path = clean(path)
    directory = "/" if is_abs(path) else src_dir
    return join(directory, path)
