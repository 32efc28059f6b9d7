"""The Python half of the LLB catalogue checked against the Go oracle (``tests/llb_oracle``).

Each submodule covers one area and exposes ``CASES: dict[str, Callable[[], llb.State]]``
whose names match the Go cases registered in ``tests/llb_oracle/catalogue_<area>.go``
(``source.py`` ↔ ``catalogue_source.go``, ``file.py`` ↔ ``catalogue_file.go``…).  Every
builder is marshaled with ``llb.marshal(state, platform="linux/amd64")`` and must give
exactly the bytes Go wrote to ``golden.json``.

:func:`load` imports every submodule found here, so a new area only needs a new module;
a module that fails to import is reported (by ``tests/test_llb_oracle.py``) without
hiding the cases of the others.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llblib_async import llb

__all__ = ["Builder", "Catalogue", "load"]

Builder = Callable[[], llb.State]


@dataclass
class Catalogue:
    """Every case of every area module: ``cases`` (name → builder), where each came from, problems."""

    cases: dict[str, Builder] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Module name → why it could not contribute (import error, bad or duplicate ``CASES``)."""


def load() -> Catalogue:
    """Import every area module of this package and merge their ``CASES``."""
    catalogue = Catalogue()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        qualified = f"{__name__}.{info.name}"
        try:
            module = importlib.import_module(qualified)
        except Exception:
            catalogue.errors[info.name] = traceback.format_exc()
            continue
        cases = getattr(module, "CASES", None)
        if not isinstance(cases, Mapping):
            catalogue.errors[info.name] = f"{qualified} has no CASES mapping"
            continue
        for name, builder in cases.items():
            if name in catalogue.cases:
                catalogue.errors[info.name] = (
                    f"case {name!r} is defined in both {catalogue.origin[name]} and {info.name}"
                )
                continue
            catalogue.cases[name] = builder
            catalogue.origin[name] = info.name
    return catalogue
