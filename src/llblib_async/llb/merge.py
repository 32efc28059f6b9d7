"""Merge ops: layer several States on top of each other without copying (Go's ``llb.Merge``).

Unlike a copy, a merge keeps each input's layers as they are, so changing one
input does not invalidate the others in the cache.  Go's special cases are kept:
scratch inputs are dropped, a merge of nothing is scratch and a merge of one
input is that input (no op).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._wire.protobuf import int_field, len_field
from ._encode import OP_MERGE, encode_op
from .state import State, scratch
from .vertex import Constraints, MarshalContext, OpMetadata, Output, Vertex, op_constraints

__all__ = ["MergeOp", "merge"]

_CAP_MERGE = "mergeop"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MergeOp(Vertex):
    """A ``MergeOp`` vertex: ``inputs`` applied in order, later ones winning (at least two)."""

    inputs: tuple[Output, ...]
    constraints: Constraints

    def _inputs(self) -> tuple[Output, ...]:
        return self.inputs

    def _encode(self, ctx: MarshalContext) -> tuple[bytes, OpMetadata]:
        # Go gives every input its own op.inputs entry, even a repeated one.
        input_msgs = [ctx.input_bytes(out) for out in self.inputs]
        payload = b"".join(len_field(1, int_field(1, i)) for i in range(len(self.inputs)))
        # A merge is not platform specific: Go clears Op.platform.
        data = encode_op(
            inputs=input_msgs,
            platform=None,
            worker_filters=self.constraints.require,
            op_field=OP_MERGE,
            op_payload=payload,
        )
        return data, self.constraints.metadata((_CAP_MERGE,))

    def __repr__(self) -> str:
        return f"<MergeOp of {len(self.inputs)}>"


def merge(
    states: Iterable[State],
    *,
    name: str | None = None,
    description: Mapping[str, str] | None = None,
    ignore_cache: bool = False,
    constraints: Constraints | None = None,
) -> State:
    """The States' filesystems layered in order, later ones winning (Go's ``llb.Merge``).

    Scratch inputs are dropped; with none left the result is scratch, with one
    it is that State itself (no op is made).  Otherwise the result keeps the
    settings (dir, env…) of the first non-scratch input.  ``name`` is the
    progress name; ``constraints`` adds other per-op
    :class:`~llblib_async.llb.Constraints`.
    """
    if isinstance(states, State):
        raise TypeError("merge() takes an iterable of States, e.g. llb.merge([a, b])")
    inputs: list[State] = []
    for st in states:
        if not isinstance(st, State):
            raise TypeError(f"merge() inputs must be States, got {type(st).__name__}")
        if st.output is not None:
            inputs.append(st)
    if not inputs:
        return scratch()
    if len(inputs) == 1:
        return inputs[0]
    op = MergeOp(
        inputs=tuple(st.output for st in inputs if st.output is not None),
        constraints=op_constraints(
            constraints, name=name, description=description, ignore_cache=ignore_cache
        ),
    )
    return inputs[0].with_output(Output(op, 0))
