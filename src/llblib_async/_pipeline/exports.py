"""Where a request's client-side exports arrive: the session's own route, or a private session.

Why a route at all: the daemon tells us which exporter a ``FileSend`` call belongs to
only by its index in the request's exporter list (``buildkit-attachable-exporter-id``,
set by ``filesync.CopyToCaller``/``CopyFileWriter``); no build ref or other
per-request header is sent (BuildKit v0.34). Likewise an OCI layout export writes to
the content store id ``export``, fixed for every request, and the daemon finds both
services through the request's ``SolveRequest.session``. So one BuildKit session can
receive the exports of one request at a time.

What we do (:meth:`ExportRoute.route`, called when a request starts):

* a request without client-side exports (no ``LocalExport``, ``TarExport``, tarballs,
  ``OCILayoutExport``) runs in the session itself and never waits;
* a request with them takes the session's own route when it is free (no other request
  is exporting through it): ``client.solve`` and sequential ``Session.do`` calls open
  no second session;
* otherwise it gets a **short-lived private session** (a new ``Control.Session``, or a
  ``/session`` hijack on Docker) for its whole solve: its own ``FileSend`` targets and
  content store, plus the same FileSync provider and the same user attachables as the
  session (secrets, SSH, auth...), and the request's ``SolveRequest.session`` names it.
  Concurrent downloads therefore overlap instead of queueing.

Why a private session rather than per-request routing in one session: nothing in a
``FileSend`` call identifies the build, so the only per-request address the daemon
honours is the session id. Go llblib makes the same choice up front (one BuildKit
session per download target, each with all the common attachables); we open them only
when downloads actually run concurrently. The price: the daemon keys its copy of a
plain ``llb.local`` by session, so a request in a private session lists its local
directories again (unchanged files are not sent again; :attr:`Session.uploads
<llblib_async.Session.uploads>` shows these transfers too), and opening a session costs
one stream on the connection (a socket on Docker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from ..attachables.attachable import Attachable
from ..attachables.content_store import EXPORT_STORE, ContentStore
from ..attachables.filesend import FileSendProvider, Target

__all__ = ["ExportRoute", "PrivateSessionOpener"]

#: Opens a private session serving the given export attachables (plus whatever the
#: session serves besides exports) and yields its id.
PrivateSessionOpener = Callable[[Sequence[Attachable]], AbstractAsyncContextManager[str]]


class ExportRoute:
    """Chooses the BuildKit session a request's exports arrive in (see the module docstring)."""

    #: False: a download waits for the session's own route instead of opening a private
    #: session (downloads queue, as before private sessions existed; the downloads
    #: benchmark sets it to compare).
    allow_private = True

    def __init__(
        self,
        session_id: str,
        filesend: FileSendProvider,
        content_store: ContentStore,
        open_private: PrivateSessionOpener,
    ) -> None:
        self._session_id = session_id
        self._filesend = filesend
        self._content_store = content_store
        self._open_private = open_private
        self._lock = asyncio.Lock()
        #: how many private export sessions were opened so far
        self.private_sessions = 0

    @contextlib.asynccontextmanager
    async def route(self, targets: Mapping[int, Target], layout: Path | None) -> AsyncIterator[str]:
        """For the duration of one request: send exporter ``i`` to ``targets[i]`` and the
        ``export`` store to ``layout``; yields the session id the request must name."""
        if not targets and layout is None:
            yield self._session_id
            return
        if not self._lock.locked() or not self.allow_private:
            async with self._lock:  # free: acquired without waiting (unless queueing)
                self._filesend.targets = dict(targets)
                if layout is not None:
                    self._content_store.stores[EXPORT_STORE] = layout
                try:
                    yield self._session_id
                finally:
                    self._filesend.targets = {}
                    self._content_store.stores.pop(EXPORT_STORE, None)
            return
        stores = dict(self._content_store.stores)  # the local cache dirs the request may use
        if layout is not None:
            stores[EXPORT_STORE] = layout
        async with self._open_private([FileSendProvider(targets), ContentStore(stores)]) as session_id:
            self.private_sessions += 1
            yield session_id
