"""README.md's "Go llblib → llblib-async" tables name every exported name of Go llblib.

The names are in tests/golden/llblib_go_names.txt (from llblib's API index); a name may
stand in a row for its Python counterpart or in a row that says why there is none.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ROOT / "tests" / "golden" / "llblib_go_names.txt"


def _go_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Go llblib → llblib-async")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_every_go_llblib_name_has_a_row() -> None:
    names = [n for n in NAMES.read_text().split("\n") if n and not n.startswith("#")]
    assert len(names) > 100  # the list is read, not empty
    section = _go_section()
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", section)]
    assert not missing, f"README.md's Go tables do not name: {', '.join(missing)}"
