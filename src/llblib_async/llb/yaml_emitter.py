"""A YAML emitter with Go ``yaml.v3``'s layout and quoting, for :mod:`.graph_yaml`.

PyYAML's emitter cannot produce yaml.v3's layout (4-space steps, its flow/block
choices, its quoting), which llblib's ``ToYAML`` output has; this one writes a
:mod:`.yaml_nodes` tree the way yaml.v3 would, with the deviations listed in
:mod:`.graph_yaml` (strings YAML 1.1 would misread are quoted; literal blocks get a
correct indentation indicator).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import yaml as _pyyaml

from .yaml_nodes import Step, YamlAlias, YamlMap, YamlNode, YamlScalar, YamlSeq, trampoline

__all__ = ["emit"]


_BEST_INDENT: Final = 4
_BREAKS: Final = frozenset("\r\n\x85\u2028\u2029")
_BLANKZ: Final = frozenset(" \t\r\n\x85\u2028\u2029\x00")

_PLAIN, _SINGLE, _DOUBLE, _LITERAL = range(4)

# yaml.v3's resolver (resolve.go), reduced to "is this plain text a non-string?".
_V3_SPECIAL: Final = frozenset(
    ["true", "True", "TRUE", "false", "False", "FALSE", "", "~", "null", "Null", "NULL"]
    + [p + v for p in ("", "+", "-") for v in (".inf", ".Inf", ".INF")]
    + [".nan", ".NaN", ".NAN"]
)
_V3_INT: Final = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|[0-9]+)")
_V3_FLOAT: Final = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
# Go's ParseFloat, which sees the text as is: "_" may only separate digits.
_V3_DOT_FLOAT: Final = re.compile(r"\.[0-9](?:_?[0-9])*(?:[eE][-+]?[0-9](?:_?[0-9])*)?")
# A superset of the layouts yaml.v3 parses as timestamps (quoting a few extra strings is harmless).
_V3_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
    r"(?:Z|[-+][0-9]{1,2}(?::?[0-9]{2})?)?)?"
)
# PyYAML's stubs leave ``resolve`` untyped; pin the signature used here.
_v11_resolve: Callable[[type[_pyyaml.nodes.Node], str, tuple[bool, bool]], str] = (
    _pyyaml.resolver.Resolver().resolve
)
_STR_TAG: Final = "tag:yaml.org,2002:str"


def _v3_non_string(text: str) -> bool:
    """Would yaml.v3 resolve plain ``text`` to a non-string?  Such strings are double-quoted."""
    if text in _V3_SPECIAL:
        return True
    first = text[0]
    if first == ".":
        return _V3_DOT_FLOAT.fullmatch(text) is not None
    if first not in "+-0123456789":
        return False
    if _V3_TIMESTAMP.fullmatch(text):
        return True
    plain = text.replace("_", "")
    return _V3_INT.fullmatch(plain) is not None or _V3_FLOAT.fullmatch(plain) is not None


def _v11_non_string(text: str) -> bool:
    """Would a YAML 1.1 reader (PyYAML) resolve plain ``text`` to a non-string (``yes``, ``1:30``, ``=``)?"""
    return _v11_resolve(_pyyaml.nodes.ScalarNode, text, (True, False)) != _STR_TAG


def _printable(ch: str) -> bool:
    c = ord(ch)
    return c == 0x0A or 0x20 <= c <= 0x7E or 0xA0 <= c <= 0xD7FF or (0xE000 <= c <= 0xFFFD and c != 0xFEFF)


@dataclass(frozen=True, slots=True)
class _Analysis:
    multiline: bool
    flow_plain: bool
    block_plain: bool
    single_quoted: bool
    block: bool


def _analyze(value: str) -> _Analysis:
    """libyaml's scalar analysis: which styles can represent ``value``."""
    if not value:
        return _Analysis(False, False, True, True, False)
    block_ind = flow_ind = line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    if value.startswith(("---", "...")):
        block_ind = flow_ind = True
    preceded_by_ws = True
    last = len(value) - 1
    for i, ch in enumerate(value):
        followed_by_ws = i == last or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif ch in "?:":
                flow_ind = True
                block_ind = block_ind or followed_by_ws
            elif ch == "-" and followed_by_ws:
                flow_ind = block_ind = True
        elif ch in ",?[]{}":
            flow_ind = True
        elif ch == ":":
            flow_ind = True
            block_ind = block_ind or followed_by_ws
        elif ch == "#" and preceded_by_ws:
            flow_ind = block_ind = True
        if ch == "\t":
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in _BLANKZ
    flow_plain = block_plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        flow_plain = block_plain = False
    if trailing_space:
        block = False
    if break_space or space_break or tabs or special:
        flow_plain = block_plain = single = False
    if space_break or special:
        block = False
    if line_breaks:
        flow_plain = block_plain = False
    if flow_ind:
        flow_plain = False
    if block_ind:
        block_plain = False
    return _Analysis(line_breaks, flow_plain, block_plain, single, block)


def _go_base64(data: bytes) -> str:
    """yaml.v3's ``encodeBase64``: 70-column lines, each newline-terminated when there are several."""
    text = base64.b64encode(data).decode("ascii")
    if len(text) < 70:
        return text
    return "".join(text[i : i + 70] + "\n" for i in range(0, len(text), 70))


_ESCAPES: Final = {
    0x00: "0",
    0x07: "a",
    0x08: "b",
    0x09: "t",
    0x0A: "n",
    0x0B: "v",
    0x0C: "f",
    0x0D: "r",
    0x1B: "e",
    0x22: '"',
    0x5C: "\\",
    0x85: "N",
    0xA0: "_",
    0x2028: "L",
    0x2029: "P",
}


class _Emitter:
    """A port of the parts of yaml.v3's emitter (libyaml + Go changes) that node trees use.

    Infinite line width (yaml.v3's default since v3: no folding), indentation 4,
    UTF-8 output, no document markers.  The structure follows libyaml's state
    machine so that whitespace decisions match it exactly.
    """

    def __init__(self) -> None:
        self._out: list[str] = []
        self._column = 0
        self._whitespace = True
        self._indention = True
        self._indent = -1
        self._indents: list[int] = []
        self._flow_level = 0
        self._head_comment = ""

    # -- writing primitives ------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self._out.append(text)
        self._column += len(text)

    def _put_break(self) -> None:
        self._out.append("\n")
        self._column = 0
        self._indention = True

    def _write_break(self, ch: str) -> None:
        if ch == "\n":
            self._put_break()
        else:
            self._out.append(ch)
            self._column = 0
            self._indention = True

    def _write_indent(self) -> None:
        indent = max(self._indent, 0)
        if not self._indention or self._column > indent or (self._column == indent and not self._whitespace):
            self._put_break()
        if self._column < indent:
            self._write(" " * (indent - self._column))
        self._whitespace = True

    def _write_indicator(self, indicator: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self._whitespace:
            self._write(" ")
        self._write(indicator)
        self._whitespace = is_ws
        self._indention = self._indention and is_indention

    def _increase_indent(self, flow: bool, in_block_sequence: bool) -> None:
        self._indents.append(self._indent)
        if self._indent < 0:
            self._indent = _BEST_INDENT if flow else 0
        elif in_block_sequence:
            # The first indent inside a sequence just skips the "- ".
            self._indent += 2
        else:
            self._indent = _BEST_INDENT * ((self._indent + _BEST_INDENT) // _BEST_INDENT)

    def _pop_indent(self) -> None:
        self._indent = self._indents.pop()

    # -- comments and anchors ----------------------------------------------------------------

    def _analyze_event(self, node: YamlNode) -> None:
        # The comment of the next node is written by whoever handles that node first.
        if isinstance(node, YamlMap | YamlSeq) and node.comment:
            self._head_comment = node.comment

    def _process_head_comment(self) -> None:
        if not self._head_comment:
            return
        self._write_indent()
        breaks = pound = False
        for ch in self._head_comment:
            if ch in _BREAKS:
                self._write_break(ch)
                breaks, pound = True, False
                continue
            if breaks:
                self._write_indent()
            if not pound:
                if ch != "#":
                    self._write("# ")
                pound = True
            self._write(ch)
            self._indention = False
            breaks = False
        if not breaks:
            self._put_break()
        self._whitespace = True
        self._head_comment = ""

    def _process_anchor(self, indicator: str, name: str | None) -> None:
        if name is None:
            return
        self._write_indicator(indicator, True, False, False)
        self._write(name)
        self._whitespace = False
        self._indention = False

    # -- nodes -------------------------------------------------------------------------------

    def document(self, root: YamlNode) -> str:
        """The whole document for ``root``, as ``yaml.Marshal`` writes it."""
        self._analyze_event(root)
        self._process_head_comment()
        trampoline(self._node(root, in_block_sequence=False, simple_key=False))
        # No "..." end marker: yaml.v3 clears its open-ended flag before the stream end.
        self._write_indent()
        return "".join(self._out)

    def _node(self, node: YamlNode, *, in_block_sequence: bool, simple_key: bool) -> Step:
        if isinstance(node, YamlAlias):
            if node.target.anchor is None:
                raise ValueError("alias to a node without an anchor")
            self._process_anchor("*", node.target.anchor)
        elif isinstance(node, YamlScalar):
            self._scalar(node, in_block_sequence=in_block_sequence, simple_key=simple_key)
        else:
            self._process_anchor("&", node.anchor)
            flow = self._flow_level > 0 or node.flow or not node.items
            if isinstance(node, YamlMap):
                yield (
                    self._flow_map(node, in_block_sequence)
                    if flow
                    else self._block_map(node, in_block_sequence)
                )
            elif flow:
                yield self._flow_seq(node, in_block_sequence)
            else:
                yield self._block_seq(node, in_block_sequence)

    def _block_seq(self, node: YamlSeq, in_block_sequence: bool) -> Step:
        self._increase_indent(False, in_block_sequence)
        for item in node.items:
            self._analyze_event(item)
            self._process_head_comment()
            self._write_indent()
            self._write_indicator("-", True, False, True)
            yield self._node(item, in_block_sequence=True, simple_key=False)
        self._pop_indent()

    def _block_map(self, node: YamlMap, in_block_sequence: bool) -> Step:
        self._increase_indent(False, in_block_sequence)
        for key, value in node.items:
            self._process_head_comment()
            self._write_indent()
            key_node = YamlScalar(key)
            if self._simple_key(key):
                self._scalar(key_node, in_block_sequence=False, simple_key=True)
                self._analyze_event(value)
                self._write_indicator(":", False, False, False)
            else:
                self._write_indicator("?", True, False, True)
                self._scalar(key_node, in_block_sequence=False, simple_key=False)
                self._analyze_event(value)
                self._write_indent()
                self._write_indicator(":", True, False, True)
            yield self._node(value, in_block_sequence=False, simple_key=False)
        self._process_head_comment()
        self._pop_indent()

    def _flow_seq(self, node: YamlSeq, in_block_sequence: bool) -> Step:
        self._write_indicator("[", True, True, False)
        self._increase_indent(True, in_block_sequence)
        self._flow_level += 1
        for i, item in enumerate(node.items):
            if i:
                self._write_indicator(",", False, False, False)
            self._analyze_event(item)
            self._process_head_comment()
            if self._column == 0:
                self._write_indent()
            yield self._node(item, in_block_sequence=False, simple_key=False)
        self._flow_level -= 1
        self._pop_indent()
        if self._column == 0:
            self._write_indent()
        self._write_indicator("]", False, False, False)

    def _flow_map(self, node: YamlMap, in_block_sequence: bool) -> Step:
        self._write_indicator("{", True, True, False)
        self._increase_indent(True, in_block_sequence)
        self._flow_level += 1
        for i, (key, value) in enumerate(node.items):
            if i:
                self._write_indicator(",", False, False, False)
            self._process_head_comment()
            if self._column == 0:
                self._write_indent()
            key_node = YamlScalar(key)
            if self._simple_key(key):
                self._scalar(key_node, in_block_sequence=False, simple_key=True)
                self._analyze_event(value)
                self._write_indicator(":", False, False, False)
            else:
                self._write_indicator("?", True, False, False)
                self._scalar(key_node, in_block_sequence=False, simple_key=False)
                self._analyze_event(value)
                self._write_indicator(":", True, False, False)
            yield self._node(value, in_block_sequence=False, simple_key=False)
        if self._head_comment and node.items:
            self._write_indicator(",", False, False, False)
        self._process_head_comment()
        self._flow_level -= 1
        self._pop_indent()
        self._write_indicator("}", False, False, False)

    @staticmethod
    def _simple_key(key: str) -> bool:
        return len(key.encode("utf-8")) <= 128 and not any(ch in _BREAKS for ch in key)

    # -- scalars -----------------------------------------------------------------------------

    def _scalar(self, node: YamlScalar, *, in_block_sequence: bool, simple_key: bool) -> None:
        value = node.value
        tag = ""
        if isinstance(value, bool):
            text, style = ("true" if value else "false"), _PLAIN
        elif isinstance(value, int):
            text, style = str(value), _PLAIN
        elif isinstance(value, bytes):
            tag = "!!binary"
            text = _go_base64(value)
            style = _LITERAL if "\n" in text else _PLAIN
        elif "\n" in value:
            text, style = value, _LITERAL
        else:
            text, style = value, (_DOUBLE if _v3_non_string(value) else _PLAIN)

        analysis = _analyze(text)
        flow = self._flow_level > 0
        if simple_key and analysis.multiline:
            style = _DOUBLE
        if style == _PLAIN and (
            (flow and not analysis.flow_plain)
            or (not flow and not analysis.block_plain)
            or (not text and (flow or simple_key))
        ):
            style = _SINGLE
        if style == _SINGLE and not analysis.single_quoted:
            style = _DOUBLE
        if style == _LITERAL and (not analysis.block or flow or simple_key):
            style = _DOUBLE
        if style == _PLAIN and not tag and isinstance(value, str) and _v11_non_string(value):
            # Quote what YAML 1.1 readers (PyYAML) would not read back as this string.
            style = _DOUBLE

        if tag:
            if not self._whitespace:
                self._write(" ")
            self._write(tag)
            self._whitespace = False
            self._indention = False
        self._increase_indent(True, in_block_sequence)
        if style == _PLAIN:
            self._plain(text)
        elif style == _SINGLE:
            self._single_quoted(text)
        elif style == _DOUBLE:
            self._double_quoted(text)
        else:
            self._literal(text)
        self._pop_indent()

    def _plain(self, text: str) -> None:
        if text and not self._whitespace:
            self._write(" ")
        # Plain scalars never contain line breaks (the analysis rules them out).
        self._write(text)
        if text:
            self._whitespace = False
        self._indention = False

    def _single_quoted(self, text: str) -> None:
        self._write_indicator("'", True, False, False)
        breaks = False
        for ch in text:
            if ch in _BREAKS:
                if not breaks and ch == "\n":
                    self._put_break()
                self._write_break(ch)
                breaks = True
                continue
            if breaks:
                self._write_indent()
            self._write("''" if ch == "'" else ch)
            self._indention = False
            breaks = False
        self._write_indicator("'", False, False, False)
        self._whitespace = False
        self._indention = False

    def _double_quoted(self, text: str) -> None:
        self._write_indicator('"', True, False, False)
        parts: list[str] = []
        # yaml.v3's is_bom() looks at the start of the string, not at the current character, so
        # a leading BOM gets every character escaped.
        escape_all = text.startswith("\ufeff")
        for ch in text:
            code = ord(ch)
            if escape_all or not _printable(ch) or ch in _BREAKS or ch in '"\\':
                short = _ESCAPES.get(code)
                if short is not None:
                    parts.append("\\" + short)
                elif code <= 0xFF:
                    parts.append(f"\\x{code:02X}")
                elif code <= 0xFFFF:
                    parts.append(f"\\u{code:04X}")
                else:
                    parts.append(f"\\U{code:08X}")
            else:
                parts.append(ch)
        self._write("".join(parts))
        self._write_indicator('"', False, False, False)
        self._whitespace = False
        self._indention = False

    def _literal(self, text: str) -> None:
        self._write_indicator("|", True, False, False)
        leading_blank = text[0] == " " or text[0] in _BREAKS
        if leading_blank:
            # The indentation indicator counts from the enclosing collection's column.  yaml.v3
            # writes its best_indent (4) here although the lines sit at its own indent, so
            # readers strip the wrong amount or fail; give the offset actually used.
            parent = max(self._indents[-1], 0)
            self._write_indicator(str(self._indent - parent), False, False, False)
        # Chomping: "-" strips a missing final break, "+" keeps several, nothing clips one.
        if text[-1] not in _BREAKS:
            self._write_indicator("-", False, False, False)
        elif len(text) == 1 or text[-2] in _BREAKS:
            self._write_indicator("+", False, False, False)
        if text[0] in _BREAKS:
            # End the header line first (libyaml does; yaml.v3 lets the value's own first line
            # break end it, which silently drops that break).
            self._put_break()
        self._whitespace = True
        breaks = True
        for ch in text:
            if ch in _BREAKS:
                self._write_break(ch)
                breaks = True
                continue
            if breaks:
                self._write_indent()
            self._write(ch)
            self._indention = False
            breaks = False


def emit(node: YamlNode) -> str:
    """Serialize a node tree as Go ``yaml.v3``'s ``Marshal`` does, byte for byte.

    Except where yaml.v3's text would read back as a different value (see the
    module docs); aliases must come after their anchors in document order.
    """
    return _Emitter().document(node)
