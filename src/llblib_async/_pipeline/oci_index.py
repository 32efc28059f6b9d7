"""OCI layout ``index.json`` on the client: what names an exported image or cache manifest.

After a build that exported cache into a local directory (``CacheExport.local``) or an
image into an OCI layout directory (``OCILayoutExport``), the blobs are in place
(through the session content store) but the layout's ``index.json`` must still name the
manifest; BuildKit's Go client does this with ``ociindex.Put`` after the solve, and so do
we. Imports of local cache read it back to find the manifest of a tag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ExportError

__all__ = ["index_digest", "put_index", "tag_of"]

_REF_NAME = "org.opencontainers.image.ref.name"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_IMAGE_NAME = "io.containerd.image.name"


def tag_of(name: str) -> str:
    """The tag of an image name (``latest`` when it has none), as ``index.json`` records it."""
    last = name.rpartition("/")[2].partition("@")[0]
    return last.rpartition(":")[2] if ":" in last else "latest"


def _read_index(root: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((root / "index.json").read_text())
    except FileNotFoundError:
        return {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": []}
    if not isinstance(loaded, dict):
        raise ExportError(f"{root / 'index.json'}: not a JSON object")
    return loaded


def put_index(root: Path, descriptor: Mapping[str, Any], tag: str, name: str | None = None) -> None:
    """Go's ``ociindex.Put``: replace the entry named ``tag`` (and image ``name``)."""
    index = _read_index(root)
    manifests = [
        m
        for m in index.get("manifests") or []
        if (m.get("annotations") or {}).get(_REF_NAME) != tag
        and (name is None or (m.get("annotations") or {}).get(_IMAGE_NAME) != name)
    ]
    entry = dict(descriptor)
    entry["annotations"] = {**(entry.get("annotations") or {}), _REF_NAME: tag}
    if name is not None:
        entry["annotations"][_IMAGE_NAME] = name
    manifests.append(entry)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index["manifests"] = manifests
    index.setdefault("schemaVersion", 2)
    index.setdefault("mediaType", _OCI_INDEX)
    tmp = root / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    tmp.replace(root / "index.json")


def index_digest(root: Path, tag: str) -> str | None:
    for m in _read_index(root).get("manifests") or []:
        if (m.get("annotations") or {}).get(_REF_NAME) == tag and isinstance(m.get("digest"), str):
            return str(m["digest"])
    return None
