"""The error contract: every public exception is a BuildKitError, exported, and in the README's table."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import llblib_async
from llblib_async import llb

README = Path(__file__).resolve().parents[1] / "README.md"


def _public_modules() -> list[str]:
    """Every module of the package whose dotted path has no ``_private`` part, but testing."""
    names = []
    for info in pkgutil.walk_packages(llblib_async.__path__, "llblib_async."):
        parts = info.name.split(".")[1:]
        if any(p.startswith("_") for p in parts) or parts[0] == "testing":
            continue
        names.append(info.name)
    return names


def _exceptions_defined_in_public_modules() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _public_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = value
    return found


def _readme_table() -> set[str]:
    text = README.read_text()
    section = text[text.index("## Errors") :]
    section = section[: section.index("\n## ", 1)]
    return set(re.findall(r"^\| `([A-Za-z.]+)` \|", section, flags=re.MULTILINE))


def test_every_public_exception_is_a_buildkit_error_exported_and_documented() -> None:
    documented = _readme_table()
    found = _exceptions_defined_in_public_modules()
    assert found, "no exception classes found: the walk is broken"
    for where, cls in found.items():
        assert issubclass(cls, llblib_async.BuildKitError), where
        exported_top = getattr(llblib_async, cls.__name__, None) is cls
        exported_llb = getattr(llb, cls.__name__, None) is cls
        assert exported_top or exported_llb, f"{where} is importable from neither llblib_async nor .llb"
        row = cls.__name__ if exported_top else f"llb.{cls.__name__}"
        assert row in documented, f"{where} is missing from the README's Errors table"


def test_every_documented_exception_exists() -> None:
    for row in _readme_table():
        owner, _, name = row.rpartition(".")
        module = llb if owner == "llb" else llblib_async
        cls = getattr(module, name)
        assert issubclass(cls, llblib_async.BuildKitError), row


def test_a_malformed_pattern_of_a_local_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(
        llblib_async.PatternError, match=r"invalid excludepatterns: \[\[a\]: syntax error"
    ) as info:
        llb.marshal(llb.local(tmp_path, exclude=["[a"], track_content=True))
    assert info.value.patterns == ["[a"]
    assert isinstance(info.value, ValueError)
