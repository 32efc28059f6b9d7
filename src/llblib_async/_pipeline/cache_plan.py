"""The cache part of one request: ``SolveRequest.cache`` entries and the client's share of the work.

:func:`plan_cache` turns a request's :class:`~llblib_async.CacheExport` /
:class:`~llblib_async.CacheImport` values into ``CacheOptionsEntry`` messages and works
out what the client must do around the build: serve the local cache directories (and
an :class:`~llblib_async.OCILayoutExport` directory) through the session content store,
skip local imports that have no manifest for their tag (as Go does), and, after the
build, record the exported manifests in ``index.json`` (:meth:`CachePlan.finish`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from .._pb.moby.buildkit import v1 as control
from ..cache import CacheExport, CacheImport
from ..exporters import Export, OCILayoutExport
from .oci_index import index_digest, put_index, tag_of

__all__ = ["CachePlan", "plan_cache"]


@dataclass
class CachePlan:
    """The cache part of one solve: request entries, the directories the session's
    content store must serve, and the client-side step after the build (``index.json``)."""

    exports: list[control.CacheOptionsEntry]
    imports: list[control.CacheOptionsEntry]
    #: content store id (``local:<dir>``) -> local cache directory, shareable between requests
    stores: dict[str, Path]
    #: local export dir -> tag to record the cache manifest under
    indexes: dict[Path, str]
    #: OCI layout directory of an :class:`OCILayoutExport`: the content store ``export``
    #: while the request exports, and its ``index.json`` updated after the build
    layout: Path | None = None

    def options_pb(self) -> control.CacheOptions | None:
        if not self.exports and not self.imports:
            return None
        return control.CacheOptions(exports=self.exports, imports=self.imports)

    async def finish(self, exporter_response: Mapping[str, str]) -> None:
        """Record the exported cache manifest in each local cache dir's ``index.json``
        and the exported image in the OCI layout directory's."""
        text = exporter_response.get("cache.manifest")
        if text and self.indexes:
            descriptor = json.loads(text)
            for root, tag in self.indexes.items():
                await anyio.to_thread.run_sync(put_index, root, descriptor, tag)
        encoded = exporter_response.get("containerimage.descriptor")
        if self.layout is not None and encoded:
            image = json.loads(base64.b64decode(encoded))
            names = [n for n in exporter_response.get("image.name", "").split(",") if n]
            if not names:
                await anyio.to_thread.run_sync(put_index, self.layout, image, "latest")
            for n in names:
                await anyio.to_thread.run_sync(put_index, self.layout, image, tag_of(n), n)


async def plan_cache(
    exports: Sequence[CacheExport], imports: Sequence[CacheImport], outputs: Sequence[Export] = ()
) -> CachePlan:
    """Turn cache options into request entries and the directories to serve.

    A local import whose ``index.json`` has no entry for its tag is skipped (as in Go).
    ``outputs`` (the solve's exporters): an :class:`OCILayoutExport` directory becomes
    the plan's ``layout`` (created if missing).
    """
    stores: dict[str, Path] = {}
    indexes: dict[Path, str] = {}
    layouts = [e.dest for e in outputs if isinstance(e, OCILayoutExport)]
    if len(layouts) > 1:
        raise ValueError("only one OCILayoutExport per solve (the daemon has one 'export' store)")
    layout = Path(layouts[0]) if layouts else None
    if layout is not None:
        await anyio.Path(layout).mkdir(parents=True, exist_ok=True)
    export_pb: list[control.CacheOptionsEntry] = []
    import_pb: list[control.CacheOptionsEntry] = []
    for ex in exports:
        if ex.type == "local":
            root = Path(ex.attrs["dest"])
            await anyio.Path(root).mkdir(parents=True, exist_ok=True)
            stores["local:" + ex.attrs["dest"]] = root
            indexes[root] = ex.attrs.get("tag", "latest")
        export_pb.append(ex.to_pb())
    for im in imports:
        attrs = dict(im.attrs)
        if im.type == "local":
            root = Path(attrs["src"])
            if not attrs.get("digest"):
                digest = await anyio.to_thread.run_sync(index_digest, root, attrs.get("tag", "latest"))
                if digest is None:
                    continue
                attrs["digest"] = digest
            stores["local:" + attrs["src"]] = root
        import_pb.append(CacheImport(im.type, attrs).to_pb())
    return CachePlan(exports=export_pb, imports=import_pb, stores=stores, indexes=indexes, layout=layout)
