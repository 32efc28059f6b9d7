"""The ``Control.SolveRequest`` of one request, and the image config the exporters get.

Sans-IO: everything here is a pure function of the request, its marshalled
Definition's cache plan and what the daemon is.

* Every request is a *gateway build*: the ``SolveRequest`` carries no definition (the
  client sends it through ``LLBBridge.Solve``), so result handlers can read the result
  before the exporters run, and one way serves every request.
* Image exporters (``ImageExport``, ``DockerExport``, ``OCIExport``,
  ``OCILayoutExport``, ``MobyExport``) without an explicit ``image_config`` get the
  request State's config as the exporter attr ``containerimage.config`` (spec §6) --
  or, for a State on ``llb.image`` whose base config is merged in during the build,
  as the result metadata of the same key (:func:`put_image_config`).
* Daemons embedding BuildKit < v0.13 (Docker 20.10) read only the deprecated
  single-exporter fields, so on a Docker daemon the first exporter is written there
  too; newer daemons ignore them when ``exporters`` is set. Docker 20.10's ``moby``
  exporter also ignores the attr and reads the config only from the result metadata:
  :func:`put_image_config` puts it there before the result is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import llb
from .._pb.moby.buildkit import v1 as control
from .._pb.moby.buildkit.v1 import frontend as gw
from ..exporters import Export
from ..llb.image_config import EXPORTER_IMAGE_CONFIG_KEY
from ..request import Request
from .cache_plan import CachePlan

__all__ = ["exporter_pb", "put_image_config", "solve_request"]


def exporter_pb(export: Export, image_config: llb.ImageConfig | None) -> control.Exporter:
    """``export`` as a ``control.Exporter``, with ``image_config`` if it takes one and has none."""
    attrs = dict(export.attrs)
    if image_config is not None and getattr(export, "accepts_image_config", False):
        attrs.setdefault(EXPORTER_IMAGE_CONFIG_KEY, image_config.to_json().decode())
    return control.Exporter(type=export.type, attrs=attrs)


def solve_request(
    request: Request,
    *,
    ref: str,
    session_id: str,
    cache: CachePlan,
    is_moby: bool,
    image_config: llb.ImageConfig | None,
) -> control.SolveRequest:
    """The ``Control.Solve`` call that opens ``request``'s gateway build ``ref``.

    ``image_config`` goes to the image exporters; ``None`` when the request has none,
    or when it is only known once the build runs (a State on ``llb.image`` whose
    base config is resolved in the build): :func:`put_image_config` then puts it in
    the result's metadata, which every image exporter reads when the attr is absent.
    """
    exporters = [exporter_pb(e, image_config) for e in request.exports]
    message = control.SolveRequest(
        ref=ref,
        session=session_id,
        exporters=exporters,
        entitlements=list(request.entitlements),
        frontend_attrs=dict(request.frontend_attrs),
        internal=not request.record_history,
    )
    if cache.exports or cache.imports:
        message.cache = control.CacheOptions(exports=cache.exports, imports=cache.imports)
    if exporters and is_moby:
        message.exporter_deprecated = exporters[0].type
        message.exporter_attrs_deprecated = dict(exporters[0].attrs)
    return message


def put_image_config(
    result: gw.Result,
    exports: Sequence[Export],
    exporters: Sequence[control.Exporter],
    *,
    resolved: llb.ImageConfig | None = None,
) -> None:
    """Copy the first image exporter's config into the result metadata (for Docker 20.10),
    or put ``resolved`` there (a config merged onto its base image's during the build).

    Exporters read both the attr and the metadata, the attr winning, so an export
    with an explicit ``image_config`` keeps it.
    """
    if resolved is not None:
        result.metadata[EXPORTER_IMAGE_CONFIG_KEY] = resolved.to_json()
        return
    for export, exporter in zip(exports, exporters, strict=True):
        config = exporter.attrs.get(EXPORTER_IMAGE_CONFIG_KEY)
        if config is not None and getattr(export, "accepts_image_config", False):
            result.metadata.setdefault(EXPORTER_IMAGE_CONFIG_KEY, config.encode())
            return
