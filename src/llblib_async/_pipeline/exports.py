"""The session's one way back for exports, lent to one request at a time.

The daemon tells us which exporter a ``FileSend`` call belongs to only by its index in
the request's exporter list (``buildkit-attachable-exporter-id``); no build ref or
other per-request header is sent (BuildKit v0.34 ``filesync.CopyToCaller``/
``CopyFileWriter``). Likewise an OCI layout export writes to the content store id
``export``, fixed for every request. So a request with client-side exports
(``LocalExport``, ``TarExport``, tarballs, ``OCILayoutExport``) claims the
:class:`ExportRoute` from just before it returns its result (when the daemon starts
exporting) until its ``Control.Solve`` ended; solving and result handlers still run in
parallel, and requests without client-side exports never wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from ..attachables.content_store import EXPORT_STORE, ContentStore
from ..attachables.filesend import FileSendProvider, Target

__all__ = ["ExportRoute"]


class ExportRoute:
    """Routes a session's FileSend targets and ``export`` store to the request exporting now."""

    def __init__(self, filesend: FileSendProvider, content_store: ContentStore) -> None:
        self._filesend = filesend
        self._content_store = content_store
        self._lock = asyncio.Lock()

    async def claim(self, targets: Mapping[int, Target], layout: Path | None) -> None:
        """Wait for the route, then send exporter ``i`` to ``targets[i]`` and the
        ``export`` store to ``layout``; :meth:`release` when the request's solve ended."""
        await self._lock.acquire()
        self._filesend.targets = dict(targets)
        if layout is not None:
            self._content_store.stores[EXPORT_STORE] = layout

    def release(self) -> None:
        self._filesend.targets = {}
        self._content_store.stores.pop(EXPORT_STORE, None)
        self._lock.release()
