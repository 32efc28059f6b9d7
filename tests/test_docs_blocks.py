"""Every code block of README.md and docs/*.md runs, or is checked, here.

The blocks are extracted from the Markdown at collection time (new docs files and blocks
are picked up without touching this file).  By the fence's language:

* ``python``: a complete program, run as ``python block.py`` in an empty directory with
  ``BUILDKIT_HOST`` = the test daemon, ``BASE_IMAGE`` = busybox on the loopback registry
  and ``REGISTRY`` = that registry (the convention of ``examples/``); it must exit 0.
* ``sh`` / ``bash`` / ``shell`` / ``console``: commands about the project itself (``pip
  install nox && nox -s demo``).  They are not run from inside the suite (``nox -s tests``
  would run itself); each ``nox -s NAME`` must name a session of noxfile.py, each path a
  file of the repository, ``.ci/run`` must run the README's test command verbatim, and
  what ``nox -s demo`` runs (``examples/demo.py``) is run by tests/test_examples.py.
* ``text``, ``json``, ``yaml``, ``toml``, ``go``: illustrations (diagrams, output, Go for
  comparison); not run.
* anything else, or no language: a failure (say what the block is).
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

PYTHON = {"python", "py"}
SHELL = {"sh", "bash", "shell", "console"}
ILLUSTRATION = {"text", "json", "yaml", "toml", "go"}

RunProgram = Callable[[Path, Path], subprocess.CompletedProcess[str]]  # the conftest fixture run_program

pytestmark = pytest.mark.timeout(300)

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a CommonMark file (backtick and tilde fences)."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end of the file, which closes it too)
        language = info.split()[0].lower() if info else ""
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n"))
    return blocks


BLOCKS = [block for doc in DOCS for block in extract_blocks(doc)]
PYTHON_BLOCKS = [b for b in BLOCKS if b.language in PYTHON]
SHELL_BLOCKS = [b for b in BLOCKS if b.language in SHELL]


def test_extractor_reads_fences_as_commonmark(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n```python\nprint(1)\n```\n\n~~~~ sh extra words\nls\n```\nstill in\n~~~~\n```\nopen"
    )
    assert extract_blocks(doc) == [
        Block(doc, 2, "python", "print(1)\n"),
        Block(doc, 6, "sh", "ls\n```\nstill in\n"),
        Block(doc, 11, "", "open\n"),
    ]


def test_the_readme_has_a_python_example_and_its_commands() -> None:
    assert any(b.path.name == "README.md" for b in PYTHON_BLOCKS)
    assert any(b.path.name == "README.md" for b in SHELL_BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_block_says_what_it_is(block: Block) -> None:
    known = PYTHON | SHELL | ILLUSTRATION
    assert block.language in known, (
        f"{block.id}: a code block tagged {block.language or '(nothing)'!r}; tag it python (run by the "
        f"suite), sh (checked) or one of {sorted(ILLUSTRATION)} (illustration)"
    )


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_is_a_complete_program(block: Block) -> None:
    tree = ast.parse(block.code, filename=block.id)  # top-level await would not parse
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports, f"{block.id} imports nothing"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, run_program: RunProgram, tmp_path: Path) -> None:
    program = tmp_path / (re.sub(r"[^A-Za-z0-9]+", "_", block.id) + ".py")
    program.write_text(block.code)
    work = tmp_path / "work"
    work.mkdir()
    run_program(program, work)


def _commands(block: Block) -> list[list[str]]:
    """The simple commands of a shell block (``&&``/``;``/``|`` split, comments and prompts dropped)."""
    commands: list[list[str]] = []
    for raw in block.code.splitlines():
        line = raw.strip().removeprefix("$ ").removeprefix("# ")
        if not line:
            continue
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def _nox_sessions() -> set[str]:
    tree = ast.parse((REPO / "noxfile.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and any("session" in ast.unparse(d) for d in node.decorator_list)
    }


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_shell_block_names_existing_sessions_and_files(block: Block) -> None:
    sessions = _nox_sessions()
    commands = _commands(block)
    assert commands, f"{block.id} has no command"
    for words in commands:
        if words[0] == "nox":
            named = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-s", "--session", "--sessions")]
            assert named, f"{block.id}: `{shlex.join(words)}` names no session"
            assert set(named) <= sessions, f"{block.id}: no nox session {sorted(set(named) - sessions)}"
        for word in words[1:]:
            if "/" in word and not word.startswith(("-", "http", "$", "unix:", "tcp:", "docker")):
                assert (REPO / word).exists(), f"{block.id}: `{shlex.join(words)}` names a missing {word}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = next(b for b in SHELL_BLOCKS if b.path.name == "README.md")
    test_lines = [line.split("#")[0].strip() for line in readme.code.splitlines() if "nox -s tests" in line]
    assert test_lines == ["pip install nox && nox -s tests"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_lines[0] in [line.strip() for line in ci]


def test_nox_demo_runs_the_example_the_suite_runs() -> None:
    source = (REPO / "noxfile.py").read_text()
    demo = source[source.index("def demo(") :].split("\n@nox.session", 1)[0]
    assert '"examples/demo.py"' in demo
    assert (REPO / "examples" / "demo.py").exists()
