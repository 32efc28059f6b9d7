"""YAML view of LLB graphs for debugging and golden tests (llblib's ``ToYAML``), sans-IO.

:func:`to_yaml` renders one YAML sequence item per state/definition::

    print(llb.to_yaml(st, other, redact=llb.graph_yaml.MACHINE_DEPENDENT_KEYS))

The tree is built from the *marshaled* ops (decoded ``pb.Op`` messages), never
from Python builder objects, so every op kind BuildKit knows renders the same
way however it was built (our API, a frontend, a hand-made ``pb.Definition``).
:func:`to_yaml_tree` returns the same tree as plain dicts/lists/scalars with
shared sub-graphs as *shared objects* (what ``yaml.safe_load`` of the text
returns), for structural comparisons.

Layout follows llblib (see the behaviour spec §4): node shapes, key order,
anchors ``&scratch`` / ``&refN_<k>`` / ``&refN`` and aliases, head comments from
``llb.customname``, the top-level ``MOUNT`` wrapper, and Go ``yaml.v3``'s output
rules (4-space steps, flow/block choices, quoting), which this module's own
emitter (:mod:`.yaml_emitter`) reproduces because PyYAML's emitter cannot produce
that layout.

Deliberate differences from llblib (each fixes a bug or a crash there):

* ``secret-envs`` lists ``NAME=ID`` strings (llblib always printed ``{}``).
* ``timestamp`` is the op's nanoseconds as RFC 3339 in UTC (llblib read them as
  seconds and printed the machine's local time zone).
* RM's ``allow-not-found`` / ``allow-wildcard`` are booleans, still always
  present (llblib printed the strings ``"true"``/``"false"``).
* ``ignore-cache: true`` is shown for every op kind, not only EXEC.
* SYMLINK actions render (``oldpath``, ``newpath``, ``owner``, ``timestamp``); a
  COPY whose source is an earlier action's output aliases that action; a DIFF
  side of ``-1`` is scratch; a MOUNT wrapper whose exec has no mount with that
  output shows the bare index (llblib errored, panicked or emitted a nil node).
* An exec output ``k > 0`` first reached as an *input* renders as a ``MOUNT``
  wrapper, so the reader can tell which mount's output is consumed (llblib
  showed the bare exec there).
* A node aliased twice keeps its first anchor name, and anchor names are kept
  unique, so the output always parses (llblib could overwrite an anchor and
  leave earlier aliases dangling).

Emitter differences from yaml.v3 (only where its text would not read back as
the same value):

* Strings that YAML 1.1 (PyYAML) would read as non-strings (``yes``, ``on``,
  ``1:30``, ``=``, ``<<``) and that yaml.v3 leaves plain are double-quoted.
* A literal block whose value starts with a space or a line break gets an
  indentation indicator matching the lines actually written, and its header
  line is ended before the value's first line break (yaml.v3 writes ``|4`` at
  the wrong offset and drops a leading newline, e.g. of a triple-quoted script).

Secret *values* never appear: the graph only holds secret IDs.  Values that
depend on the machine (``local.unique``, ``local.sharedkeyhint``) can be
replaced with ``redact=`` for golden files.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from .._pb import pb
from .marshal import Definition, marshal
from .platform import Platform
from .state import State
from .yaml_emitter import emit
from .yaml_nodes import Step, YamlAlias, YamlMap, YamlNode, YamlScalar, YamlSeq, to_plain, trampoline

__all__ = ["MACHINE_DEPENDENT_KEYS", "Target", "to_yaml", "to_yaml_nodes", "to_yaml_tree"]

MACHINE_DEPENDENT_KEYS: Final = ("local.sharedkeyhint", "local.unique")
"""Attr keys whose values differ between machines or checkouts; pass as ``redact=`` for goldens."""

_LLB_DEFINITION_INPUT: Final = "buildkit.llb.definition"
_CUSTOM_NAME: Final = "llb.customname"

# ---------------------------------------------------------------------------------------------
# Graph → node tree
# ---------------------------------------------------------------------------------------------

Target: TypeAlias = State | Definition | pb.Definition
"""What :func:`to_yaml` accepts: a State (marshaled first) or an already marshaled graph."""


@dataclass(frozen=True, slots=True)
class _Meta:
    ignore_cache: bool = False
    custom_name: str | None = None


_NO_META = _Meta()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load(
    target: Target, platform: Platform | str | None
) -> tuple[list[tuple[str, bytes]], dict[str, _Meta]]:
    """The ``(digest, op bytes)`` list and per-digest metadata of ``target``."""
    if isinstance(target, State):
        target = marshal(target, platform=platform)
    if isinstance(target, Definition):
        ops = list(zip(target.digests, target.ops, strict=True))
        meta = {
            d: _Meta(m.ignore_cache, m.description_map.get(_CUSTOM_NAME)) for d, m in target.metadata.items()
        }
        return ops, meta
    if isinstance(target, pb.Definition):
        return _load_pb(target)
    raise TypeError(f"expected a State, Definition or pb.Definition, not {type(target).__name__}")


def _load_pb(definition: pb.Definition) -> tuple[list[tuple[str, bytes]], dict[str, _Meta]]:
    ops = [(_digest(data), data) for data in definition.def_]
    meta = {d: _Meta(m.ignore_cache, m.description.get(_CUSTOM_NAME)) for d, m in definition.metadata.items()}
    return ops, meta


class _Shared:
    """State shared by all items of one dump: rendered nodes, reference names, anchors."""

    def __init__(self) -> None:
        self.cache: dict[str, YamlMap] = {}
        self.scratch: YamlMap | None = None
        self._names: dict[str, str] = {}
        self._anchors: dict[str, YamlMap | YamlSeq] = {}

    def ref_name(self, digest: str) -> str:
        """``ref<N>`` for ``digest``, numbered in order of first alias creation (like llblib)."""
        name = self._names.get(digest)
        if name is None:
            name = f"ref{len(self._names)}"
            self._names[digest] = name
        return name

    def alias(self, target: YamlMap | YamlSeq, anchor: str) -> YamlAlias:
        """An alias to ``target``, anchoring it as ``anchor`` unless it already has an anchor."""
        if target.anchor is None:
            # Keep names unique: llblib could give two nodes the same anchor.
            name, n = anchor, 1
            while name in self._anchors:
                n += 1
                name = f"{anchor}-{n}"
            target.anchor = name
            self._anchors[name] = target
        return YamlAlias(target)

    def scratch_node(self) -> YamlNode:
        """The scratch source: in full the first time, then ``*scratch``."""
        if self.scratch is not None:
            return self.alias(self.scratch, "scratch")
        node = YamlMap()
        node.add_str("type", "SOURCE")
        node.add_str("source", "scratch")
        self.scratch = node
        return node


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(int(value))


def _int32(value: int) -> int:
    # Go converts the uint32 secret/ssh modes with int32(...).
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def _add_mode(node: YamlMap, mode: int) -> None:
    if mode != -1:
        node.add_str("mode", "0o" + format(mode, "o"))


def _add_int(node: YamlMap, key: str, value: int) -> None:
    if value != -1:
        node.add(key, YamlScalar(value))


def _rfc3339_utc(ns: int) -> str:
    """Nanoseconds since the epoch as Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    when = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + "Z"


def _add_timestamp(node: YamlMap, ns: int) -> None:
    if ns != -1:
        node.add_str("timestamp", _rfc3339_utc(ns))


def _add_owner(node: YamlMap, owner: pb.ChownOpt | None) -> None:
    if owner is None:
        return
    owner_node = YamlMap()
    node.add("owner", owner_node)
    for key, opt in (("user", owner.user), ("group", owner.group)):
        if opt is None:
            continue
        if opt.by_name is not None:
            owner_node.add_str(key, opt.by_name.name)
        elif opt.by_id is not None:
            _add_int(owner_node, key, opt.by_id)


def _add_seq(node: YamlMap, key: str, values: Iterable[str], *, flow: bool) -> None:
    items: list[YamlNode] = [YamlScalar(v) for v in values]
    if items:
        node.add(key, YamlSeq(items, flow=flow))


def _add_sorted_map(node: YamlMap, key: str, values: Mapping[str, str], *, flow: bool) -> None:
    if values:
        node.add(key, YamlMap([(k, YamlScalar(values[k])) for k in sorted(values)], flow=flow))


def _mount_with_output(node: YamlMap, index: int) -> YamlMap | None:
    """The mount entry of an EXEC node whose ``output`` is ``index``."""
    mounts = node.get("mounts")
    if isinstance(mounts, YamlSeq):
        for mount in mounts.items:
            if isinstance(mount, YamlMap):
                output = mount.get("output")
                if isinstance(output, YamlScalar) and type(output.value) is int and output.value == index:
                    return mount
    return None


class _Graph:
    """The ops and metadata visible while rendering one item (plus an embedded BUILD definition)."""

    def __init__(self, shared: _Shared, ops: dict[str, pb.Op], meta: dict[str, _Meta]) -> None:
        self.shared = shared
        self.ops = ops
        self.meta = meta

    def extended(
        self, ops: list[tuple[str, bytes]], meta: Mapping[str, _Meta]
    ) -> tuple[pb.Input | None, _Graph]:
        """This graph plus ``ops``/``meta``, and the root input of their terminal op (None: scratch)."""
        all_ops = dict(self.ops)
        for d, data in ops:
            all_ops[d] = pb.Op().parse(data)
        graph = _Graph(self.shared, all_ops, {**self.meta, **meta})
        if not ops:
            return None, graph
        terminal = all_ops[ops[-1][0]]
        if not terminal.inputs:
            raise ValueError("invalid definition: the terminal op has no input")
        return terminal.inputs[0], graph

    # -- visiting ----------------------------------------------------------------------------

    def visit(self, inp: pb.Input, *, nested: bool = True) -> Step:
        """Render the op behind ``inp`` (or alias it when already rendered)."""
        shared = self.shared
        cached = shared.cache.get(inp.digest)
        if cached is not None:
            # Re-visiting an exec output aliases that output's mount entry, not the whole exec.
            target = _mount_with_output(cached, inp.index) or cached
            return shared.alias(target, f"{shared.ref_name(inp.digest)}_{inp.index}")
        op = self.ops.get(inp.digest)
        if op is None:
            raise ValueError(f"op {inp.digest} not found")
        node: YamlMap = yield self._render(inp.digest, op)
        meta = self.meta.get(inp.digest, _NO_META)
        if meta.ignore_cache:
            node.add("ignore-cache", YamlScalar(True))
        if op.constraints is not None and op.constraints.filter:
            constraints = YamlMap()
            _add_seq(constraints, "filters", op.constraints.filter, flow=False)
            node.add("constraints", constraints)
        shared.cache[inp.digest] = node
        if meta.custom_name is not None:
            node.comment = meta.custom_name
        if nested and inp.index > 0:
            # Without this, a consumer of exec output k>0 would show the bare exec.
            return self.mount_wrapper(inp, node)
        return node

    def mount_wrapper(self, inp: pb.Input, node: YamlNode) -> YamlMap:
        """``{type: MOUNT, input: <exec>, output: <mount entry>}`` for output ``inp.index`` of an op."""
        shared = self.shared
        output: YamlNode | None = None
        if isinstance(node, YamlMap):
            mount = _mount_with_output(node, inp.index)
            if mount is not None:
                output = shared.alias(mount, f"{shared.ref_name(inp.digest)}_{inp.index}")
        else:
            parent = shared.cache.get(inp.digest)
            if isinstance(node, YamlAlias) and parent is not None and node.target is not parent:
                # Already rendered: ``node`` aliases the mount entry; the input aliases the exec.
                output = node
                node = shared.alias(parent, shared.ref_name(inp.digest))
        if output is None:
            # No mount produces this output (not an exec): show the index rather than nothing.
            output = YamlScalar(inp.index)
        wrapper = YamlMap()
        wrapper.add_str("type", "MOUNT")
        wrapper.add("input", node)
        wrapper.add("output", output)
        return wrapper

    def _input(self, op: pb.Op, index: int, what: str) -> Step:
        if index < 0:
            return self.shared.scratch_node()
        if index >= len(op.inputs):
            raise ValueError(f"invalid op: {what} uses input {index} of an op with {len(op.inputs)} inputs")
        return (yield self.visit(op.inputs[index]))

    def _render(self, digest: str, op: pb.Op) -> Step:
        if op.exec is not None:
            return (yield self._exec(op, op.exec))
        if op.source is not None:
            return self._source(op, op.source)
        if op.file is not None:
            return (yield self._file(digest, op, op.file))
        if op.build is not None:
            return (yield self._build(op, op.build))
        if op.merge is not None:
            return (yield self._merge(op, op.merge))
        if op.diff is not None:
            return (yield self._diff(op, op.diff))
        kind = "passthrough" if op.passthrough is not None else "empty"
        raise ValueError(f"unexpected op type ({kind}) for {digest}")

    # -- op kinds ----------------------------------------------------------------------------

    def _source(self, op: pb.Op, src: pb.SourceOp) -> YamlMap:
        node = YamlMap()
        node.add_str("type", "SOURCE")
        node.add_str("source", src.identifier)
        _add_sorted_map(node, "attrs", src.attrs, flow=True)
        if op.platform is not None:
            # The variant is left out, as llblib does.
            node.add_str("platform", f"{op.platform.os}/{op.platform.architecture}")
        return node

    def _exec(self, op: pb.Op, ex: pb.ExecOp) -> Step:
        meta = ex.meta if ex.meta is not None else pb.Meta()
        node = YamlMap()
        node.add_str("type", "EXEC")
        # Flow style unless an argument spans lines (those need literal blocks).
        _add_seq(node, "args", meta.args, flow=not any("\n" in a for a in meta.args))
        _add_seq(node, "env", meta.env, flow=True)
        node.add_str("cwd", meta.cwd)
        node.add_str("user", meta.user)
        node.add_str("hostname", meta.hostname)
        if meta.extra_hosts:
            hosts: list[YamlNode] = [
                YamlMap([("host", YamlScalar(h.host)), ("ip", YamlScalar(h.ip))], flow=True)
                for h in meta.extra_hosts
            ]
            node.add("extra-hosts", YamlSeq(hosts))
        if ex.network != pb.NetMode.UNSET:
            node.add_str("network-mode", _enum_name(ex.network))
        if ex.security != pb.SecurityMode.SANDBOX:
            node.add_str("security-mode", _enum_name(ex.security))
        # llblib meant this list but built an always-empty mapping.
        _add_seq(node, "secret-envs", (f"{s.name}={s.id}" for s in ex.secretenv), flow=True)
        mounts = YamlSeq()
        node.add("mounts", mounts)
        for mount in ex.mounts:
            mounts.items.append((yield self._mount(op, mount)))
        return node

    def _mount(self, op: pb.Op, m: pb.Mount) -> Step:
        node = YamlMap()
        node.add_str("mountpoint", m.dest)
        node.add_str("type", _enum_name(m.mount_type))
        is_bind = m.mount_type == pb.MountType.BIND
        if is_bind and not m.readonly:
            # Only writable bind mounts have outputs.
            _add_int(node, "output", m.output)
        node.add_true("readonly", m.readonly)
        node.add_str("source-path", m.selector)
        if m.cache_opt is not None:
            node.add_str("cache-id", m.cache_opt.id)
            node.add_str("sharing", _enum_name(m.cache_opt.sharing))
        for key, opt in (("secret", m.secret_opt), ("ssh", m.ssh_opt)):
            if opt is None:
                continue
            node.add_str(key, opt.id)
            if opt.uid:
                node.add("uid", YamlScalar(opt.uid))
            if opt.gid:
                node.add("gid", YamlScalar(opt.gid))
            _add_mode(node, _int32(opt.mode))
        if not is_bind:
            # Secret, SSH, cache and tmpfs mounts have no input.
            return node
        node.add("input", (yield self._input(op, m.input, f"mount {m.dest!r}")))
        return node

    def _file(self, digest: str, op: pb.Op, fop: pb.FileOp) -> Step:
        node = YamlMap()
        node.add_str("type", "FILE")
        actions = YamlSeq()
        node.add("actions", actions)
        rendered: list[YamlMap] = []
        for i, act in enumerate(fop.actions):
            action = self._file_action(act)
            input_key = "dest-input" if act.secondary_input >= 0 else "input"
            action.add(input_key, (yield self._action_input(digest, op, act.input, i, rendered)))
            if act.secondary_input >= 0:
                action.add(
                    "src-input", (yield self._action_input(digest, op, act.secondary_input, i, rendered))
                )
            actions.items.append(action)
            rendered.append(action)
        return node

    def _action_input(self, digest: str, op: pb.Op, index: int, i: int, rendered: list[YamlMap]) -> Step:
        """An action's input: scratch, an op input, or the output of an earlier action of this op."""
        if index < len(op.inputs):
            return (yield self._input(op, index, f"file action {i}"))
        earlier = index - len(op.inputs)
        if earlier >= len(rendered):
            raise ValueError(f"invalid file op: action {i} uses the output of action {earlier}")
        return self.shared.alias(rendered[earlier], f"{self.shared.ref_name(digest)}_{i}")

    @staticmethod
    def _file_action(act: pb.FileAction) -> YamlMap:
        node = YamlMap()
        if (cp := act.copy) is not None:
            node.add_str("type", "COPY")
            node.add_str("src", cp.src)
            node.add_str("dest", cp.dest)
            _add_owner(node, cp.owner)
            _add_mode(node, cp.mode)
            node.add_true("follow-symlinks", cp.follow_symlink)
            node.add_true("contents-only", cp.dir_copy_contents)
            node.add_true("unpack-archive", cp.attempt_unpack_docker_compatibility)
            node.add_true("create-dest-path", cp.create_dest_path)
            node.add_true("allow-wildcard", cp.allow_wildcard)
            node.add_true("allow-empty-wildcard", cp.allow_empty_wildcard)
            _add_timestamp(node, cp.timestamp)
            _add_seq(node, "include-patterns", cp.include_patterns, flow=False)
            _add_seq(node, "exclude-patterns", cp.exclude_patterns, flow=False)
        elif (mkdir := act.mkdir) is not None:
            node.add_str("type", "MKDIR")
            node.add_str("path", mkdir.path)
            _add_mode(node, mkdir.mode)
            node.add_true("create-parents", mkdir.make_parents)
            _add_owner(node, mkdir.owner)
            _add_timestamp(node, mkdir.timestamp)
        elif (mkfile := act.mkfile) is not None:
            node.add_str("type", "MKFILE")
            node.add_str("path", mkfile.path)
            _add_mode(node, mkfile.mode)
            if mkfile.data:
                try:
                    node.add("data", YamlScalar(mkfile.data.decode("utf-8")))
                except UnicodeDecodeError:
                    node.add("data", YamlScalar(bytes(mkfile.data)))
            _add_owner(node, mkfile.owner)
            _add_timestamp(node, mkfile.timestamp)
        elif (rm := act.rm) is not None:
            node.add_str("type", "RM")
            node.add_str("path", rm.path)
            # Always shown (as llblib does), but as booleans rather than llblib's strings.
            node.add("allow-not-found", YamlScalar(rm.allow_not_found))
            node.add("allow-wildcard", YamlScalar(rm.allow_wildcard))
        elif (link := act.symlink) is not None:
            node.add_str("type", "SYMLINK")
            node.add_str("oldpath", link.oldpath)
            node.add_str("newpath", link.newpath)
            _add_owner(node, link.owner)
            _add_timestamp(node, link.timestamp)
        else:
            raise ValueError("unexpected file action type (empty action)")
        return node

    def _build(self, op: pb.Op, build: pb.BuildOp) -> Step:
        node = YamlMap()
        node.add_str("type", "BUILD")
        _add_sorted_map(node, "attrs", build.attrs, flow=False)
        inputs = YamlMap()
        node.add("inputs", inputs)
        def_input = build.inputs.get(_LLB_DEFINITION_INPUT)
        if def_input is None:
            raise ValueError(f"build op is missing its {_LLB_DEFINITION_INPUT} input")
        if not 0 <= def_input.input < len(op.inputs):
            raise ValueError(f"build op input {def_input.input} is out of range")
        source = op.inputs[def_input.input]
        inputs.add(_LLB_DEFINITION_INPUT, (yield self.visit(source)))
        # The definition to build is the data of the MKFILE that makes the input.
        source_op = self.ops[source.digest]
        if source_op.file is None:
            raise ValueError("build op input is not a FILE op")
        if not source_op.file.actions:
            raise ValueError("build op input has no actions")
        mkfile = source_op.file.actions[0].mkfile
        if mkfile is None:
            raise ValueError("build op input action is not a MKFILE")
        ops, meta = _load_pb(pb.Definition().parse(mkfile.data))
        root, graph = self.extended(ops, meta)
        node.add("build", (yield graph.visit(root)) if root is not None else self.shared.scratch_node())
        return node

    def _merge(self, op: pb.Op, merge: pb.MergeOp) -> Step:
        node = YamlMap()
        node.add_str("type", "MERGE")
        if merge.inputs:
            inputs = YamlSeq()
            node.add("inputs", inputs)
            for i, inp in enumerate(merge.inputs):
                inputs.items.append((yield self._input(op, inp.input, f"merge input {i}")))
        return node

    def _diff(self, op: pb.Op, diff: pb.DiffOp) -> Step:
        node = YamlMap()
        node.add_str("type", "DIFF")
        lower = diff.lower.input if diff.lower is not None else -1
        upper = diff.upper.input if diff.upper is not None else -1
        node.add("lower", (yield self._input(op, lower, "diff lower")))
        node.add("upper", (yield self._input(op, upper, "diff upper")))
        return node


def _redact(root: YamlNode, keys: frozenset[str], replacement: str) -> None:
    """Replace the scalar values (or scalar list items) of mapping entries named in ``keys``."""
    seen: set[int] = set()
    stack: list[YamlNode] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, YamlMap):
            for i, (key, value) in enumerate(node.items):
                if key in keys:
                    if isinstance(value, YamlScalar):
                        node.items[i] = (key, YamlScalar(replacement))
                        continue
                    if isinstance(value, YamlSeq):
                        value.items = [
                            YamlScalar(replacement) if isinstance(v, YamlScalar) else v for v in value.items
                        ]
                stack.append(value)
        elif isinstance(node, YamlSeq):
            stack.extend(node.items)


def to_yaml_nodes(
    *targets: Target,
    platform: Platform | str | None = None,
    redact: Iterable[str] = (),
    redact_value: str = "<redacted>",
) -> YamlSeq:
    """The YAML node tree of :func:`to_yaml` (a sequence with one item per target).

    Useful to post-process the tree before :func:`emit`.  Arguments as for :func:`to_yaml`.
    """
    if isinstance(redact, str):
        raise TypeError("redact must be an iterable of keys, not a str")
    shared = _Shared()
    items = YamlSeq()
    for target in targets:
        ops, meta = _load(target, platform)
        # Ops and metadata come from this target only; rendered nodes and anchors are shared, so
        # later items alias what earlier items rendered.
        root, graph = _Graph(shared, {}, {}).extended(ops, meta)
        if root is None:
            items.items.append(shared.scratch_node())
            continue
        node: YamlNode = trampoline(graph.visit(root, nested=False))
        if root.index > 0:
            node = graph.mount_wrapper(root, node)
        items.items.append(node)
    keys = frozenset(redact)
    if keys:
        _redact(items, keys, redact_value)
    return items


def to_yaml(
    *targets: Target,
    platform: Platform | str | None = None,
    redact: Iterable[str] = (),
    redact_value: str = "<redacted>",
) -> str:
    """Render the graphs behind ``targets`` as YAML text: a sequence with one item per target.

    ``targets`` are States (marshaled with ``platform`` as the default platform,
    see :func:`~llblib_async.llb.marshal`), :class:`Definition` objects, or
    ``pb.Definition`` messages (e.g. a whole solve request's definition).  Nodes
    shared between or within targets are written once, anchored, and aliased
    afterwards.  Values of mapping entries whose key is in ``redact`` (e.g.
    :data:`MACHINE_DEPENDENT_KEYS`) are replaced by ``redact_value``.

    Raises ``ValueError`` for a malformed graph (a missing op, an input index out
    of range, an op kind BuildKit's LLB does not define).
    """
    return emit(to_yaml_nodes(*targets, platform=platform, redact=redact, redact_value=redact_value))


def to_yaml_tree(
    *targets: Target,
    platform: Platform | str | None = None,
    redact: Iterable[str] = (),
    redact_value: str = "<redacted>",
) -> list[Any]:
    """The tree of :func:`to_yaml` as plain Python values: dicts, lists, str, int, bool, bytes.

    Equal to ``yaml.safe_load(to_yaml(...))``, including identity: an aliased
    node is the *same* dict object at every place it appears.
    """
    tree: list[Any] = to_plain(
        to_yaml_nodes(*targets, platform=platform, redact=redact, redact_value=redact_value)
    )
    return tree
