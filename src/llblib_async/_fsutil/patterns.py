"""A port of ``github.com/moby/patternmatcher`` v0.6.1 (the ``.dockerignore`` syntax).

fsutil filters what a FileSync sender sends with these matchers (include patterns,
exclude patterns, ``!`` exceptions, ``**``), so the port follows the Go code line by
line, including Go's ``path/filepath.Match`` (used to validate patterns and by
fsutil's followpaths wildcards) and ``path.Clean``. Paths are ``/``-separated
(this is the Unix build of the Go code).

Known difference: patterns are translated to a regular expression like upstream,
but compiled with Python's :mod:`re` instead of Go's RE2 -- the few constructs that
differ (POSIX classes such as ``[[:alpha:]]``) have no meaning in
``filepath.Match`` syntax anyway.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SEPARATOR = "/"


class BadPatternError(ValueError):
    """Go's ``filepath.ErrBadPattern``: a pattern is syntactically invalid."""

    def __init__(self, pattern: str = "") -> None:
        # Same text as Go's error: it ends up in the ERR packet the daemon reports.
        super().__init__("syntax error in pattern")
        self.pattern = pattern


# --------------------------------------------------------------------------- path.Clean


def clean(path: str) -> str:
    """Go's ``path.Clean``: lexical shortest equivalent of a ``/``-separated path."""
    if path == "":
        return "."
    rooted = path[0] == "/"
    n = len(path)
    # A character buffer, so the ".." backtracking is exactly Go's (lazybuf).
    buf: list[str] = []
    r = 0
    dotdot = 0
    if rooted:
        buf.append("/")
        r, dotdot = 1, 1
    while r < n:
        if path[r] == "/":
            r += 1  # empty path element
        elif path[r] == "." and (r + 1 == n or path[r + 1] == "/"):
            r += 1  # . element
        elif path[r] == "." and r + 1 < n and path[r + 1] == "." and (r + 2 == n or path[r + 2] == "/"):
            r += 2  # .. element: remove to last /
            if len(buf) > dotdot:
                w = len(buf) - 1
                while w > dotdot and buf[w] != "/":
                    w -= 1
                del buf[w:]
            elif not rooted:
                # cannot backtrack, but not rooted, so append .. element.
                if buf:
                    buf.append("/")
                buf.extend("..")
                dotdot = len(buf)
        else:
            # real path element; add slash if needed
            if (rooted and len(buf) != 1) or (not rooted and len(buf) != 0):
                buf.append("/")
            while r < n and path[r] != "/":
                buf.append(path[r])
                r += 1
    if not buf:
        return "."
    return "".join(buf)


def go_dir(path: str) -> str:
    """Go's ``path.Dir``."""
    i = path.rfind("/")
    return clean(path[: i + 1])


def go_base(path: str) -> str:
    """Go's ``path.Base``."""
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    i = path.rfind("/")
    return path[i + 1 :]


def go_join(*elems: str) -> str:
    """Go's ``path.Join``: join non-empty elements with ``/`` and clean."""
    parts = [e for e in elems if e != ""]
    if not parts:
        return ""
    return clean("/".join(parts))


# --------------------------------------------------------------------------- filepath.Match


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            # error check handled in _match_chunk: bad pattern.
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            return star, pattern[:i], pattern[i:]
        i += 1
    return star, pattern, ""


def _get_esc(chunk: str) -> tuple[str, str]:
    if chunk == "" or chunk[0] in "-]":
        raise BadPatternError()
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if chunk == "":
            raise BadPatternError()
    r, nchunk = chunk[0], chunk[1:]
    if nchunk == "":
        raise BadPatternError()
    return r, nchunk


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """Go's ``matchChunk``; raises :class:`BadPatternError` on a malformed chunk."""
    # After the match fails, the loop continues on processing chunk, checking
    # that the pattern is well-formed but no longer reading s (as Go does).
    failed = False
    while chunk:
        failed = failed or s == ""
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk and chunk[0] == "^":
                negated = True
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                match = match or (r != "" and lo <= r <= hi)
                nrange += 1
            failed = failed or match == negated
        elif c == "?":
            if not failed:
                failed = s[0] == SEPARATOR
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if chunk == "":
                    raise BadPatternError()
            if not failed:
                failed = chunk[0] != s[0]
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def filepath_match(pattern: str, name: str) -> bool:
    """Go's ``path/filepath.Match`` (Unix): shell pattern match of a whole name.

    Raises :class:`BadPatternError` for malformed patterns, also when the name
    would not match (Go validates the rest of the pattern too).
    """
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            # Trailing * matches rest of string unless it has a /.
            return SEPARATOR not in name
        try:
            t, ok = _match_chunk(chunk, name)
            err: BadPatternError | None = None
        except BadPatternError as e:
            t, ok, err = "", False, e
        # if we're the last chunk, make sure we've exhausted the name
        # otherwise we'll give a false result even if we could still match using the star
        if ok and (t == "" or pattern):
            name = t
            continue
        if err is not None:
            raise err
        if star:
            # Look for match skipping i+1 bytes. Cannot skip /.
            matched_here = False
            i = 0
            while i < len(name) and name[i] != SEPARATOR:
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    # if we're the last chunk, make sure we exhausted the name
                    if not pattern and t:
                        i += 1
                        continue
                    name = t
                    matched_here = True
                    break
                i += 1
            if matched_here:
                continue
        return False
    return name == ""


# --------------------------------------------------------------------------- patternmatcher


class MatchType(enum.Enum):
    UNKNOWN = 0
    EXACT = 1
    PREFIX = 2
    SUFFIX = 3
    REGEXP = 4


# Characters that need escaping in a regexp but have no meaning in filepath.Match
# (patternmatcher's shouldEscape); "\" is handled separately.
_SHOULD_ESCAPE = frozenset(".+()|{}$")


@dataclass(eq=False)
class Pattern:
    """One cleaned pattern (patternmatcher's ``Pattern``)."""

    cleaned_pattern: str
    exclusion: bool = False
    dirs: list[str] = field(default_factory=list)
    match_type: MatchType = MatchType.UNKNOWN
    regexp_source: str | None = None
    _regexp: re.Pattern[str] | None = None

    def __str__(self) -> str:
        return self.cleaned_pattern

    def compile(self, sl: str = SEPARATOR) -> None:
        """Translate to a match type (and a regexp if needed), exactly as Go does."""
        reg = "^"
        detected = MatchType.EXACT
        pattern = self.cleaned_pattern
        esc_sl = sl + "\\" if sl == "\\" else sl
        i = 0
        pos = 0
        n = len(pattern)
        while pos < n:
            ch = pattern[pos]
            pos += 1
            if ch == "*":
                if pos < n and pattern[pos] == "*":
                    # is some flavor of "**"
                    pos += 1
                    # Treat **/ as ** so eat the "/"
                    if pos < n and pattern[pos] == sl:
                        pos += 1
                    if pos >= n:
                        # is "**EOF" - to align with .gitignore just accept all
                        if detected == MatchType.EXACT:
                            detected = MatchType.PREFIX
                        else:
                            reg += ".*"
                            detected = MatchType.REGEXP
                    else:
                        # is "**": allows any number of /'s (even 0)
                        reg += "(.*" + esc_sl + ")?"
                        detected = MatchType.REGEXP
                    if i == 0:
                        detected = MatchType.SUFFIX
                else:
                    # is "*" so map it to anything but "/"
                    reg += "[^" + esc_sl + "]*"
                    detected = MatchType.REGEXP
            elif ch == "?":
                reg += "[^" + esc_sl + "]"
                detected = MatchType.REGEXP
            elif ch in _SHOULD_ESCAPE:
                reg += "\\" + ch
            elif ch == "\\":
                if sl == "\\":
                    reg += esc_sl
                    i += 1
                    continue
                if pos < n:
                    reg += "\\" + pattern[pos]
                    pos += 1
                    detected = MatchType.REGEXP
                else:
                    reg += "\\"
            elif ch in "[]":
                reg += ch
                detected = MatchType.REGEXP
            else:
                reg += ch
            i += 1

        if detected == MatchType.REGEXP:
            reg += "$"
            try:
                # Go's "$" (no multiline) only matches at the very end; Python's also
                # before a final newline, hence \Z for the compiled form.
                compiled = re.compile(reg[:-1] + r"\Z")
            except re.error as e:
                raise BadPatternError(self.cleaned_pattern) from e
            self._regexp = compiled
            self.regexp_source = reg
        self.match_type = detected

    def match(self, path: str) -> bool:
        if self.match_type == MatchType.UNKNOWN:
            try:
                self.compile(SEPARATOR)
            except BadPatternError:
                # Stays UNKNOWN, so every later call fails the same way (upstream
                # regression test for moby/moby#52203).
                raise BadPatternError(self.cleaned_pattern) from None
        mt = self.match_type
        if mt == MatchType.EXACT:
            return path == self.cleaned_pattern
        if mt == MatchType.PREFIX:
            # strip trailing **
            return path.startswith(self.cleaned_pattern[:-2])
        if mt == MatchType.SUFFIX:
            # strip leading **
            suffix = self.cleaned_pattern[2:]
            if path.endswith(suffix):
                return True
            # **/foo matches "foo"
            return suffix[:1] == SEPARATOR and path == suffix[1:]
        if mt == MatchType.REGEXP:
            if self._regexp is None:
                raise BadPatternError(self.cleaned_pattern)
            return self._regexp.match(path) is not None
        raise BadPatternError(self.cleaned_pattern)


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results of a directory, passed down to its children."""

    parent_matched: tuple[bool, ...] = ()


class PatternMatcher:
    """patternmatcher's ``PatternMatcher``: ordered patterns with ``!`` exceptions."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns: list[Pattern] = []
        self._exclusions = False
        for raw in patterns:
            # Eliminate leading and trailing whitespace.
            p = raw.strip()
            if p == "":
                continue
            p = clean(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
                self._exclusions = True
            # Syntax check through filepath.Match's error state, as upstream does.
            filepath_match(p, ".")
            self._patterns.append(Pattern(cleaned_pattern=p, exclusion=exclusion, dirs=p.split(SEPARATOR)))

    @property
    def patterns(self) -> Sequence[Pattern]:
        return tuple(self._patterns)

    def exclusions(self) -> bool:
        """True if any pattern is a ``!`` exception."""
        return self._exclusions

    def matches(self, file: str) -> bool:
        """Deprecated upstream (checks a single parent dir only); kept for the Go tests."""
        matched = False
        parent_path = go_dir(file)
        parent_dirs = parent_path.split(SEPARATOR)
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            match = pattern.match(file)
            if not match and parent_path != "." and len(pattern.dirs) <= len(parent_dirs):
                try:
                    match = pattern.match(SEPARATOR.join(parent_dirs[: len(pattern.dirs)]))
                except BadPatternError:
                    match = False
            if match:
                matched = not pattern.exclusion
        return matched

    def matches_or_parent_matches(self, file: str) -> bool:
        """True if ``file`` or one of its parent dirs matches (and no later exception)."""
        matched = False
        parent_path = go_dir(file)
        parent_dirs = parent_path.split(SEPARATOR)
        for pattern in self._patterns:
            # Skip evaluation if this is an inclusion and the filename already
            # matched the pattern, or it's an exclusion and it has not matched yet.
            if pattern.exclusion != matched:
                continue
            match = pattern.match(file)
            if not match and parent_path != ".":
                for i in range(len(parent_dirs)):
                    try:
                        match = pattern.match(SEPARATOR.join(parent_dirs[: i + 1]))
                    except BadPatternError:
                        match = False
                    if match:
                        break
            if match:
                matched = not pattern.exclusion
        return matched

    def matches_using_parent_result(self, file: str, parent_matched: bool) -> bool:
        """Deprecated upstream; kept for the Go tests."""
        matched = parent_matched
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.match(file):
                matched = not pattern.exclusion
        return matched

    def matches_using_parent_results(self, file: str, parent: MatchInfo) -> tuple[bool, MatchInfo]:
        """Match ``file`` reusing its parent directory's per-pattern results."""
        parent_matched = parent.parent_matched
        if parent_matched and len(parent_matched) != len(self._patterns):
            raise ValueError("wrong number of values in parentMatched")
        matched = False
        results = [False] * len(self._patterns)
        for i, pattern in enumerate(self._patterns):
            match = parent_matched[i] if parent_matched else False
            if not match:
                if pattern.exclusion != matched:
                    continue
                match = pattern.match(file)
                # Without parent info, apply the same logic as matches_or_parent_matches.
                if not match and not parent_matched:
                    parent_path = go_dir(file)
                    if parent_path != ".":
                        parent_dirs = parent_path.split(SEPARATOR)
                        for j in range(len(parent_dirs)):
                            try:
                                match = pattern.match(SEPARATOR.join(parent_dirs[: j + 1]))
                            except BadPatternError:
                                match = False
                            if match:
                                break
            results[i] = match
            if match:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))


def matches(file: str, patterns: Sequence[str]) -> bool:
    """Package-level ``Matches`` (deprecated upstream; used by the Go tests)."""
    pm = PatternMatcher(patterns)
    file = clean(file)
    if file == ".":
        # Don't let them exclude everything, kind of silly.
        return False
    return pm.matches(file)


def matches_or_parent_matches(file: str, patterns: Sequence[str]) -> bool:
    pm = PatternMatcher(patterns)
    file = clean(file)
    if file == ".":
        return False
    return pm.matches_or_parent_matches(file)
