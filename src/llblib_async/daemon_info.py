"""What the daemon reports about itself: versions, workers, build-cache records.

Plain, immutable views of ``Control.Info``, ``ListWorkers``, ``DiskUsage`` and
``Prune`` answers (:class:`~llblib_async.Client`); the generated protobuf classes
stay private.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._pb import pb
from ._pb.moby.buildkit import v1 as control
from ._pb.moby.buildkit.v1 import types as worker_types

__all__ = ["BuildkitInfo", "GCPolicy", "UsageRecord", "Worker", "platform_string"]


def platform_string(p: pb.Platform) -> str:
    """``os/arch[/variant]``, the form BuildKit and Docker print."""
    parts = [p.os, p.architecture]
    if p.variant:
        parts.append(p.variant)
    return "/".join(parts)


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True, slots=True)
class BuildkitInfo:
    """Version of the BuildKit daemon (``buildctl debug info``)."""

    version: str
    package: str = ""
    revision: str = ""

    @classmethod
    def from_pb(cls, v: worker_types.BuildkitVersion | None) -> BuildkitInfo:
        if v is None:
            return cls(version="")
        return cls(version=v.version, package=v.package, revision=v.revision)


@dataclass(frozen=True, slots=True)
class GCPolicy:
    """One garbage-collection rule of a worker."""

    all: bool
    keep_duration: datetime.timedelta
    filters: tuple[str, ...]
    reserved_space: int
    max_used_space: int
    min_free_space: int


@dataclass(frozen=True, slots=True)
class Worker:
    """A worker of the daemon: what it can build for and how it collects garbage."""

    id: str
    platforms: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    gc_policy: tuple[GCPolicy, ...] = ()
    buildkit: BuildkitInfo | None = None

    @property
    def executor(self) -> str | None:
        return self.labels.get("org.mobyproject.buildkit.worker.executor")

    @property
    def snapshotter(self) -> str | None:
        return self.labels.get("org.mobyproject.buildkit.worker.snapshotter")

    @classmethod
    def from_pb(cls, w: worker_types.WorkerRecord) -> Worker:
        return cls(
            id=w.id,
            platforms=tuple(platform_string(p) for p in w.platforms),
            labels=_frozen(w.labels),
            gc_policy=tuple(
                GCPolicy(
                    all=g.all,
                    keep_duration=datetime.timedelta(microseconds=g.keep_duration / 1000),
                    filters=tuple(g.filters),
                    reserved_space=g.reserved_space,
                    max_used_space=g.max_used_space,
                    min_free_space=g.min_free_space,
                )
                for g in w.gc_policy
            ),
            buildkit=BuildkitInfo.from_pb(w.buildkit_version) if w.buildkit_version else None,
        )


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One build-cache record (``buildctl du``), also what ``prune`` reports as deleted."""

    id: str
    size: int
    mutable: bool = False
    in_use: bool = False
    shared: bool = False
    parents: tuple[str, ...] = ()
    created_at: datetime.datetime | None = None
    last_used_at: datetime.datetime | None = None
    usage_count: int = 0
    description: str = ""
    record_type: str = ""

    @classmethod
    def from_pb(cls, r: control.UsageRecord) -> UsageRecord:
        parents = tuple(r.parents) or ((r.parent,) if r.parent else ())
        return cls(
            id=r.id,
            size=r.size,
            mutable=r.mutable,
            in_use=r.in_use,
            shared=r.shared,
            parents=parents,
            created_at=r.created_at,
            last_used_at=r.last_used_at,
            usage_count=r.usage_count,
            description=r.description,
            record_type=r.record_type,
        )
