"""The YAML node tree that :mod:`.graph_yaml` builds and :mod:`.yaml_emitter` writes.

A small model of exactly what the graph view needs -- scalars, block or flow maps
and sequences with head comments and anchors, and aliases -- plus
:func:`trampoline`, which walks deep trees (a long chain of ops nests one level per
op) without Python recursion, and :func:`to_plain`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = ["Step", "YamlAlias", "YamlMap", "YamlNode", "YamlScalar", "YamlSeq", "to_plain", "trampoline"]


@dataclass(eq=False, slots=True)
class YamlScalar:
    """A scalar: ``str`` (a YAML string), ``int``, ``bool``, or ``bytes`` (rendered ``!!binary``).

    ``bytes`` is for data that is not valid UTF-8 (Go's ``yaml.v3`` does the same
    for such strings); valid UTF-8 data should be given as ``str``.
    """

    value: str | int | bool | bytes


@dataclass(eq=False, slots=True)
class YamlMap:
    """A mapping with string keys in insertion order.

    ``flow`` selects ``{a: b}`` style; ``anchor`` is set when something aliases
    the node; ``comment`` is a head comment (``# …`` line(s) above the node).
    """

    items: list[tuple[str, YamlNode]] = field(default_factory=list)
    flow: bool = False
    anchor: str | None = None
    comment: str = ""

    def get(self, key: str) -> YamlNode | None:
        """The value of the first entry named ``key``, or ``None``."""
        for k, v in self.items:
            if k == key:
                return v
        return None

    def add(self, key: str, value: YamlNode) -> None:
        """Append ``key: value``."""
        self.items.append((key, value))

    def add_str(self, key: str, value: str) -> None:
        """Append ``key: value`` unless ``value`` is empty (llblib's ``yamlAddKV``)."""
        if value:
            self.items.append((key, YamlScalar(value)))

    def add_true(self, key: str, value: bool) -> None:
        """Append ``key: true`` when ``value`` is true; false flags are left out."""
        if value:
            self.items.append((key, YamlScalar(True)))


@dataclass(eq=False, slots=True)
class YamlSeq:
    """A sequence; ``flow`` selects ``[a, b]`` style.  See :class:`YamlMap` for the other fields."""

    items: list[YamlNode] = field(default_factory=list)
    flow: bool = False
    anchor: str | None = None
    comment: str = ""


@dataclass(eq=False, slots=True)
class YamlAlias:
    """A reference to an anchored mapping or sequence, written ``*<target.anchor>``."""

    target: YamlMap | YamlSeq


YamlNode: TypeAlias = YamlScalar | YamlMap | YamlSeq | YamlAlias
"""Any node of the YAML tree."""

# A coroutine-style step: yields sub-steps and receives their results (see trampoline).
Step: TypeAlias = Generator["Step", Any, Any]


def trampoline(step: Step) -> Any:
    """Run a tree of generator steps without Python recursion.

    Each step ``yield``s a sub-step and is resumed with that sub-step's return
    value.  Deep graphs (a long chain of ops nests one level per op) would
    otherwise hit the interpreter's recursion limit after a few hundred ops.
    """
    stack: list[Step] = [step]
    value: Any = None
    while True:
        try:
            sub = stack[-1].send(value)
        except StopIteration as stop:
            stack.pop()
            if not stack:
                return stop.value
            value = stop.value
            continue
        stack.append(sub)
        value = None


def to_plain(node: YamlNode) -> Any:
    """Convert a node tree to plain Python values, aliases becoming shared objects."""
    containers: dict[int, Any] = {}
    pending: list[tuple[YamlMap | YamlSeq, Any]] = []

    def convert(n: YamlNode) -> Any:
        if isinstance(n, YamlAlias):
            n = n.target
        if isinstance(n, YamlScalar):
            return n.value
        found = containers.get(id(n))
        if found is None:
            found = {} if isinstance(n, YamlMap) else []
            containers[id(n)] = found
            pending.append((n, found))
        return found

    result = convert(node)
    while pending:
        n, container = pending.pop()
        if isinstance(n, YamlMap):
            for key, value in n.items:
                container[key] = convert(value)
        else:
            container.extend(convert(v) for v in n.items)
    return result
