"""Diff ops: the changes that turn one State into another, as a State (Go's ``llb.Diff``).

Merged onto a base with :func:`~llblib_async.llb.merge`, a diff applies
"what this step added" without copying files.  Go's special cases are kept: a
diff from scratch is the upper State itself, scratch to scratch is scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._wire.protobuf import int_field, len_field
from ._encode import OP_DIFF, encode_op
from .state import State, scratch
from .vertex import Constraints, MarshalContext, OpMetadata, Output, Vertex, follow, op_constraints

__all__ = ["DiffOp", "diff"]

_CAP_DIFF = "diffop"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class DiffOp(Vertex):
    """A ``DiffOp`` vertex: from ``lower`` to ``upper`` (``None`` = scratch)."""

    lower: Output | None
    upper: Output | None
    constraints: Constraints

    def _inputs(self) -> tuple[Output, ...]:
        return tuple(o for o in (self.lower, self.upper) if o is not None)

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        input_msgs: list[bytes] = []
        refs: list[int] = []
        for out in (self.lower, self.upper):
            target = None if out is None else follow(out, ctx)  # an llb.lazy State may be scratch
            if target is None:
                refs.append(-1)
            else:
                # Go appends lower and upper separately, even when they are the same output.
                refs.append(len(input_msgs))
                input_msgs.append(ctx.input_bytes(target))
        lower, upper = refs
        payload = len_field(1, int_field(1, lower)) + len_field(2, int_field(1, upper))
        # A diff is not platform specific: Go clears Op.platform.
        data = encode_op(
            inputs=input_msgs,
            platform=None,
            worker_filters=self.constraints.require,
            op_field=OP_DIFF,
            op_payload=payload,
        )
        return data, self.constraints.metadata((_CAP_DIFF,))

    def __repr__(self) -> str:
        return "<DiffOp>"


def diff(
    lower: State,
    upper: State,
    *,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """What changed from ``lower`` to ``upper``, as a State (Go's ``llb.Diff``).

    If ``lower`` is scratch the result is ``upper`` itself (or scratch); else
    it keeps ``lower``'s settings (dir, env…).  Deletions are recorded too, so
    merging the diff onto another base replays them.  ``name`` is the progress
    name; ``constraints`` adds other per-op :class:`~llblib_async.llb.Constraints`.
    """
    if not isinstance(lower, State) or not isinstance(upper, State):
        raise TypeError("diff() takes two States")
    if lower.output is None:
        return scratch() if upper.output is None else upper
    op = DiffOp(
        lower=lower.output,
        upper=upper.output,
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return lower.with_output(Output(op, 0))
