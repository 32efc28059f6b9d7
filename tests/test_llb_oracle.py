"""llblib_async.llb against BuildKit's Go client/llb, case by case (the oracle's golden file).

``tests/llb_oracle`` (Go, BuildKit pinned in its go.mod) marshals every catalogue case
and writes ``golden.json``; ``tests/llb_catalogue`` builds the same cases with the
Python API.  For every case the ops, their digests, the head digest and the whole
Definition (map entries sorted, see ``tests/llb_oracle/main.go``) must be
byte-identical.  Nothing expected is written here: it all comes from golden.json.

Regenerate golden.json with ``nox -s oracle`` after adding or changing a Go case;
``nox -s oracle -- --check`` (CI) fails when it is out of date.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from llb_catalogue import Catalogue, load

from llblib_async import llb
from llblib_async._pb import pb

ROOT = Path(__file__).resolve().parent.parent
ORACLE_DIR = ROOT / "tests" / "llb_oracle"
GOLDEN = ORACLE_DIR / "golden.json"
PINS = ROOT / "proto" / "pins.toml"
REGENERATE = "run `nox -s oracle` to regenerate tests/llb_oracle/golden.json"


@cache
def _golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


@cache
def _catalogue() -> Catalogue:
    return load()


def _all_names() -> list[str]:
    return sorted(set(_golden()["cases"]) | set(_catalogue().cases))


# --- readable differences ------------------------------------------------------------------------


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _relabel(text: str, labels: dict[str, str]) -> str:
    """Replace full digests by ``<op N: abcdef…>`` so diffs show which op an input points at."""
    return re.sub(r"sha256:[0-9a-f]{64}", lambda m: labels.get(m.group(0), _short(m.group(0))), text)


def _op_json(data: bytes, labels: dict[str, str]) -> list[str]:
    decoded = pb.Op().parse(data).to_dict()
    return _relabel(json.dumps(decoded, indent=2, sort_keys=True, ensure_ascii=False), labels).splitlines()


def _labels(digests: list[str]) -> dict[str, str]:
    return {d: f"<op {i}: {_short(d)}>" for i, d in enumerate(digests)}


def _by_position(mapping: dict[str, Any] | None, digests: list[str]) -> list[str]:
    """A digest-keyed map as JSON lines keyed by op position, so Go's and Python's line up."""
    position = {d: i for i, d in enumerate(digests)}
    ordered = sorted((mapping or {}).items(), key=lambda kv: (position.get(kv[0], len(digests)), kv[0]))
    keyed = {
        f"op {position[k]}" if k in position else k: json.loads(json.dumps(v, sort_keys=True))
        for k, v in ordered
    }
    return json.dumps(keyed, indent=2, ensure_ascii=False).splitlines()


def _udiff(go: list[str], py: list[str], what: str) -> list[str]:
    return list(difflib.unified_diff(go, py, f"go   {what}", f"python {what}", lineterm="", n=3))


def _explain(name: str, go: dict[str, Any], ours: llb.Definition) -> str:
    """A report of how Python's Definition for ``name`` differs from Go's."""
    go_ops = [bytes.fromhex(h) for h in go["ops"]]
    go_digests: list[str] = go["digests"]
    lines = [f"case {name!r}: Python's Definition differs from Go's (tests/llb_oracle/golden.json)"]
    if len(go_ops) != len(ours.ops):
        lines.append(f"  Go has {len(go_ops)} ops, Python {len(ours.ops)}")
    go_labels = _labels(go_digests)
    py_labels = _labels(list(ours.digests))
    for i in range(max(len(go_ops), len(ours.ops))):
        go_op = go_ops[i] if i < len(go_ops) else None
        py_op = ours.ops[i] if i < len(ours.ops) else None
        if go_op == py_op:
            continue
        lines.append(f"--- op {i} differs")
        go_lines = _op_json(go_op, go_labels) if go_op is not None else ["(no op)"]
        py_lines = _op_json(py_op, py_labels) if py_op is not None else ["(no op)"]
        diff = _udiff(go_lines, py_lines, f"op {i}")
        if diff:
            lines.extend(diff)
        else:
            lines.append("  same message, different encoding (field or map-entry order?)")
            lines.append(f"  go:     {go_op.hex() if go_op else ''}")
            lines.append(f"  python: {py_op.hex() if py_op else ''}")
    if go["head"] != (ours.head_digest or ""):
        lines.append(f"head: go {go['head'] or '(none)'} != python {ours.head_digest or '(none)'}")
    go_def = pb.Definition.parse(bytes.fromhex(go["def"]))
    py_def = pb.Definition.parse(ours.to_bytes())
    go_meta = _by_position(go_def.to_dict().get("metadata"), go_digests)
    py_meta = _by_position(py_def.to_dict().get("metadata"), list(ours.digests))
    lines.extend(_udiff(go_meta, py_meta, "Definition.metadata"))
    go_source = _relabel(json.dumps(go_def.to_dict().get("source"), indent=2, sort_keys=True), go_labels)
    py_source = _relabel(json.dumps(py_def.to_dict().get("source"), indent=2, sort_keys=True), py_labels)
    lines.extend(_udiff(go_source.splitlines(), py_source.splitlines(), "Definition.source"))
    if len(lines) == 1:
        lines.append("  decoded messages are equal: the difference is in the encoding of the Definition")
    return "\n".join(lines)


# --- the tests -----------------------------------------------------------------------------------


def test_golden_was_made_with_the_pinned_buildkit() -> None:
    pinned = tomllib.loads(PINS.read_text())["go"]["buildkit"]
    assert _golden()["buildkit"] == pinned, f"golden.json is from another BuildKit; {REGENERATE}"
    go_mod = (ORACLE_DIR / "go.mod").read_text()
    required = re.search(r"^\s*(?:require\s+)?github\.com/moby/buildkit\s+(\S+)", go_mod, re.MULTILINE)
    assert required is not None, "tests/llb_oracle/go.mod does not require github.com/moby/buildkit"
    assert required.group(1) == pinned, (
        "tests/llb_oracle/go.mod must require github.com/moby/buildkit at proto/pins.toml's version"
    )
    assert _golden()["platform"] == "linux/amd64"


def test_catalogue_modules_load() -> None:
    errors = _catalogue().errors
    assert not errors, "\n\n".join(f"tests/llb_catalogue/{m}.py:\n{e}" for m, e in errors.items())


def test_catalogue_is_big_enough() -> None:
    assert len(_golden()["cases"]) >= 60


@pytest.mark.parametrize("name", _all_names())
def test_case_matches_go(name: str) -> None:
    golden_cases = _golden()["cases"]
    catalogue = _catalogue()
    if name not in golden_cases:
        pytest.fail(
            f"case {name!r} (tests/llb_catalogue/{catalogue.origin[name]}.py) is not in golden.json: "
            f"add it to a tests/llb_oracle/catalogue_*.go file and {REGENERATE}"
        )
    if name not in catalogue.cases:
        pytest.fail(
            f"golden.json has case {name!r} but no tests/llb_catalogue module defines it in CASES "
            "(or its module failed to import; see test_catalogue_modules_load)"
        )
    go = golden_cases[name]
    ours = llb.marshal(catalogue.cases[name](), platform="linux/amd64")

    same = (
        [op.hex() for op in ours.ops] == go["ops"]
        and list(ours.digests) == go["digests"]
        and (ours.head_digest or "") == go["head"]
        and ours.to_bytes().hex() == go["def"]
    )
    if not same:
        pytest.fail(_explain(name, go, ours), pytrace=False)
    # The message handed to the solver is the same one as well.
    assert ours.to_pb() == pb.Definition.parse(bytes.fromhex(go["def"]))
