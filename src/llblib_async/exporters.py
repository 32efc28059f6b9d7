"""Where a build's result goes.

Each exporter is an immutable value naming a BuildKit exporter and, for those
that send their output back to the client, the local destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from ._fsutil.receive import DirectoryTarget, FileTarget, Target


@dataclass(frozen=True, slots=True)
class _ClientExport:
    """An exporter whose output is sent back through the session to ``dest``."""

    dest: Path
    attrs: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", Path(self.dest))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def session_target(self) -> Target | None:
        """How the session's FileSend receiver stores this exporter's output (None: not sent back)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class LocalExport(_ClientExport):
    """Write the result's filesystem into the directory ``dest`` (created if missing)."""

    type: ClassVar[str] = "local"

    def session_target(self) -> Target:
        return DirectoryTarget(self.dest)


@dataclass(frozen=True, slots=True)
class TarExport(_ClientExport):
    """Write the result's filesystem as a tar archive to the file ``dest``."""

    type: ClassVar[str] = "tar"

    def session_target(self) -> Target:
        return FileTarget(self.dest)


Export = LocalExport | TarExport
