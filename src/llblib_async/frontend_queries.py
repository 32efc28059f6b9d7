"""Asking a Dockerfile frontend about a Dockerfile: outline, targets, lint.

BuildKit's Dockerfile frontend answers *subrequests* instead of building when its
option ``requestid`` is ``frontend.outline``, ``frontend.targets`` or
``frontend.lint`` (``docker buildx build --call=outline|targets|check``); the answer is
JSON in the result metadata (``result.json``). These functions run such a request in a
:class:`~llblib_async.Session` for a State made by :func:`llblib_async.llb.dockerfile`
(or ``llb.frontend`` of a Dockerfile frontend image) and decode the answer into frozen
dataclasses; places in the Dockerfile are :class:`~llblib_async.errors.SourceLocation`
values (``.line``, ``.snippet()``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import llb
from .errors import FrontendQueryError, SourceLocation
from .gateway.result import Result
from .llb.frontend import frontend_spec, frontend_state
from .request import Request
from .session import Session

__all__ = [
    "BuildArg",
    "LintReport",
    "LintWarning",
    "Outline",
    "OutlineItem",
    "Target",
    "lint",
    "outline",
    "targets",
]


@dataclass(frozen=True, slots=True)
class BuildArg:
    """An ``ARG`` the build uses: its default ``value`` and where it is declared."""

    name: str
    value: str = ""
    description: str = ""
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class OutlineItem:
    """A secret or SSH agent the build mounts (``RUN --mount=type=secret|ssh``)."""

    name: str
    required: bool = False
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class Outline:
    """What a build target needs: ``target`` (the stage), its ``args``, ``secrets`` and ``ssh``."""

    target: str
    description: str
    args: tuple[BuildArg, ...]
    secrets: tuple[OutlineItem, ...]
    ssh: tuple[OutlineItem, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A stage of the Dockerfile: ``base`` is its ``FROM`` text, ``default`` marks the last stage."""

    name: str
    default: bool = False
    description: str = ""
    base: str = ""
    platform: str = ""
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class LintWarning:
    """A lint rule the Dockerfile breaks (``rule`` e.g. ``FromAsCasing``)."""

    rule: str
    description: str
    detail: str
    url: str
    location: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class LintReport:
    """The lint checks' outcome: ``warnings``; ``error`` when the Dockerfile does not even parse."""

    warnings: tuple[LintWarning, ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when there is nothing to report."""
        return not self.warnings and not self.error


async def _ask(session: Session, state: llb.State, query: str, opts: Mapping[str, str]) -> dict[str, Any]:
    spec = frontend_spec(state)
    if spec is None:
        raise TypeError(f"{query} needs a State made by llb.dockerfile() or llb.frontend(), not {state!r}")
    metadata: dict[str, bytes] = {}

    async def keep(result: Result) -> None:
        metadata.update(result.metadata)

    request_state = frontend_state(spec.with_opts(requestid=query, **opts), label=query)
    await session.do(Request.of(request_state, label=query, on_result=keep))
    raw = metadata.get("result.json")
    if raw is None:
        raise FrontendQueryError(
            query, "the frontend sent no result.json (does it support the query?)", metadata
        )
    try:
        answer = json.loads(raw)
    except ValueError as err:
        raise FrontendQueryError(query, f"result.json is not JSON: {err}", metadata) from err
    if not isinstance(answer, dict):
        raise FrontendQueryError(query, "result.json is not an object", metadata)
    return answer


def _sources(answer: Mapping[str, Any], filename: str) -> list[tuple[str, bytes, str]]:
    """The answer's source files: base64 strings (outline, targets) or SourceInfo objects (lint)."""
    out: list[tuple[str, bytes, str]] = []
    for source in answer.get("sources") or ():
        try:
            if isinstance(source, str):
                out.append((filename, base64.b64decode(source), "Dockerfile"))
            elif isinstance(source, dict):
                data = base64.b64decode(source.get("data") or "")
                out.append((source.get("filename") or filename, data, source.get("language") or "Dockerfile"))
        except (binascii.Error, ValueError):
            out.append((filename, b"", "Dockerfile"))
    return out


def _location(value: Any, sources: list[tuple[str, bytes, str]]) -> SourceLocation | None:
    if not isinstance(value, dict):
        return None
    index = value.get("sourceIndex", 0)
    if not isinstance(index, int) or not 0 <= index < len(sources):
        index = 0
    filename, data, language = sources[index] if sources else ("Dockerfile", b"", "Dockerfile")
    ranges = []
    for r in value.get("ranges") or ():
        start, end = r.get("start") or {}, r.get("end") or {}
        ranges.append(
            (start.get("line", 0), start.get("character", 0), end.get("line", 0), end.get("character", 0))
        )
    return SourceLocation(filename=filename, data=data, language=language, ranges=tuple(ranges))


def _filename(state: llb.State) -> str:
    spec = frontend_spec(state)
    return spec.opts.get("filename", "Dockerfile") if spec is not None else "Dockerfile"


async def outline(session: Session, state: llb.State, *, target: str | None = None) -> Outline:
    """The build args, secrets and SSH agents ``state``'s Dockerfile target uses (``--call=outline``)."""
    answer = await _ask(session, state, "frontend.outline", {"target": target} if target else {})
    sources = _sources(answer, _filename(state))
    return Outline(
        target=answer.get("name", ""),
        description=answer.get("description", ""),
        args=tuple(
            BuildArg(
                a["name"], a.get("value", ""), a.get("description", ""), _location(a.get("location"), sources)
            )
            for a in answer.get("args") or ()
        ),
        secrets=tuple(
            OutlineItem(s["name"], bool(s.get("required")), _location(s.get("location"), sources))
            for s in answer.get("secrets") or ()
        ),
        ssh=tuple(
            OutlineItem(s["name"], bool(s.get("required")), _location(s.get("location"), sources))
            for s in answer.get("ssh") or ()
        ),
    )


async def targets(session: Session, state: llb.State) -> tuple[Target, ...]:
    """The stages of ``state``'s Dockerfile (``--call=targets``)."""
    answer = await _ask(session, state, "frontend.targets", {})
    sources = _sources(answer, _filename(state))
    return tuple(
        Target(
            name=t.get("name", ""),
            default=bool(t.get("default")),
            description=t.get("description", ""),
            base=t.get("base", ""),
            platform=t.get("platform", ""),
            location=_location(t.get("location"), sources),
        )
        for t in answer.get("targets") or ()
    )


async def lint(session: Session, state: llb.State) -> LintReport:
    """Run the frontend's lint checks on ``state``'s Dockerfile (``--call=check``) without building."""
    answer = await _ask(session, state, "frontend.lint", {})
    sources = _sources(answer, _filename(state))
    error = answer.get("error")
    message = ""
    if isinstance(error, dict):
        message = error.get("message", "") or json.dumps(error)
    return LintReport(
        warnings=tuple(
            LintWarning(
                rule=w.get("ruleName", ""),
                description=w.get("description", ""),
                detail=w.get("detail", ""),
                url=w.get("url", ""),
                location=_location(w.get("location"), sources),
            )
            for w in answer.get("warnings") or ()
        ),
        error=message,
    )
