"""What a container on the build worker is made of, derived from an exec op (sans-IO).

A container is described the way BuildKit describes a ``RUN``: an ``ExecOp`` (command,
env, cwd, user, hostname, extra hosts, network, security, secret env, and its mounts).
Two places give us one:

* a container *request* or a result handler's container: the user's options are turned
  into ``root.run(...)`` with the LLB builder, so every mount kind, option and check of
  ``run`` applies, and the marshaled exec op is read back (:meth:`ContainerSpec.from_definition`);
  each mount's source is then solved on its own (:func:`input_definition`) to get the
  gateway result id the container mounts;
* a failed step (``OnError``): the daemon's ``errdefs.Solve`` error detail carries the
  failed ``pb.Op`` (as JSON) and, for each of its mounts, the result id of the mount *as
  it was when the process failed* (:meth:`ContainerSpec.from_solve_error`).

Either way :meth:`ContainerSpec.new_container_request` makes the
``LLBBridge.NewContainer`` request and :attr:`ContainerSpec.meta` the process defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._pb import pb
from .._pb.moby.buildkit.v1 import frontend as gw
from ..errors import ContainerError

__all__ = ["ContainerSpec", "input_definition"]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container: its exec op's mounts and process settings, and a result id per mount.

    ``refs[i]`` is the gateway result id mounted for ``exec.mounts[i]`` (``""`` when the
    mount has no content of its own: scratch, cache, tmpfs, secret, SSH).
    """

    exec: pb.ExecOp
    refs: tuple[str, ...]
    platform: pb.Platform | None = None
    constraints: pb.WorkerConstraints | None = None
    # Inputs to solve before the container can start: mount index -> op input index.
    unresolved: Mapping[int, int] = field(default_factory=dict)

    @property
    def meta(self) -> pb.Meta:
        return self.exec.meta if self.exec.meta is not None else pb.Meta()

    @classmethod
    def from_op(cls, op: pb.Op, refs: Sequence[str] = ()) -> ContainerSpec:
        if op.exec is None:
            raise ContainerError("op", type(op).__name__, "the op is not an exec")
        mounts = op.exec.mounts
        refs = tuple(refs) + ("",) * (len(mounts) - len(refs))
        unresolved = {
            i: m.input
            for i, m in enumerate(mounts)
            if not refs[i] and m.input >= 0 and m.mount_type == pb.MountType.BIND
        }
        return cls(
            exec=op.exec, refs=refs, platform=op.platform, constraints=op.constraints, unresolved=unresolved
        )

    @classmethod
    def from_definition(cls, definition: pb.Definition) -> tuple[ContainerSpec, str]:
        """The spec of the exec op ``definition`` ends with, and that op's digest."""
        ops = {_digest(d): d for d in definition.def_}
        if not definition.def_:
            raise ContainerError("root", "scratch", "the definition has no exec op")
        terminal = pb.Op.parse(definition.def_[-1])
        if not terminal.inputs:
            raise ContainerError("root", "definition", "the definition has no head op")
        head = terminal.inputs[0].digest
        return cls.from_op(pb.Op.parse(ops[head])), head

    @classmethod
    def from_solve_error(cls, detail: Mapping[str, Any]) -> ContainerSpec | None:
        """The failed step of an ``errdefs.Solve`` detail (``None`` if it was no exec).

        A mount the process could write (``mountIDs[i]``) is mounted as it was when the
        process failed; one it could not (read-only, no output) from its input
        (``inputIDs[i]``); cache, tmpfs, secret and SSH mounts are made again as the op
        says (a cache mount is the same cache directory).
        """
        raw_op = detail.get("op")
        if not isinstance(raw_op, Mapping):
            return None
        try:
            op = pb.Op.from_dict(dict(raw_op))
        except Exception:  # a daemon newer than our stubs: nothing we can run
            return None
        if op.exec is None:
            return None
        mount_ids = _strings(detail.get("mountIDs"))
        input_ids = _strings(detail.get("inputIDs"))
        refs = []
        for i in range(len(op.exec.mounts)):
            ref = mount_ids[i] if i < len(mount_ids) else ""
            if not ref and i < len(input_ids):
                ref = input_ids[i]
            refs.append(ref)
        spec = cls.from_op(op, refs)
        # Inputs the daemon gave no id for are scratch: nothing to solve.
        return ContainerSpec(
            exec=spec.exec, refs=spec.refs, platform=spec.platform, constraints=spec.constraints
        )

    def with_refs(self, resolved: Mapping[int, str]) -> ContainerSpec:
        refs = tuple(resolved.get(i, r) for i, r in enumerate(self.refs))
        return ContainerSpec(exec=self.exec, refs=refs, platform=self.platform, constraints=self.constraints)

    def with_root_ref(self, ref: str) -> ContainerSpec:
        """The same container with the result ``ref`` mounted at ``/``."""
        for i, m in enumerate(self.exec.mounts):
            if m.dest == "/":
                refs = list(self.refs)
                refs[i] = ref
                unresolved = {k: v for k, v in self.unresolved.items() if k != i}
                return ContainerSpec(
                    exec=self.exec,
                    refs=tuple(refs),
                    platform=self.platform,
                    constraints=self.constraints,
                    unresolved=unresolved,
                )
        raise ContainerError("root", ref, "the container has no root mount")

    def with_mounts_of(self, other: ContainerSpec, *, root: bool) -> ContainerSpec:
        """This container with ``other``'s mounts added (both resolved): a mount of
        ``other`` replaces this one's at the same path, and ``other``'s root ``/`` is taken
        only with ``root=True``.  The rest of this container (its process settings) stays."""
        if self.unresolved or other.unresolved:
            raise ValueError("both containers' mounts must be solved first")
        taken = {
            m.dest: (m, ref)
            for m, ref in zip(other.exec.mounts, other.refs, strict=True)
            if root or m.dest != "/"
        }
        pairs = [(m, ref) for m, ref in zip(self.exec.mounts, self.refs, strict=True) if m.dest not in taken]
        pairs.extend(taken.values())
        # the root first, then by path, so a mount point's parent is mounted before it
        pairs.sort(key=lambda pair: (pair[0].dest != "/", pair[0].dest))
        return ContainerSpec(
            exec=dataclasses.replace(self.exec, mounts=[m for m, _ in pairs]),
            refs=tuple(ref for _, ref in pairs),
            platform=self.platform,
            constraints=self.constraints,
        )

    def new_container_request(self, container_id: str) -> gw.NewContainerRequest:
        meta = self.meta
        mounts = [
            pb.Mount(
                dest=m.dest,
                selector=m.selector,
                readonly=m.readonly,
                mount_type=m.mount_type,
                cache_opt=m.cache_opt,
                tmpfs_opt=m.tmpfs_opt,
                secret_opt=m.secret_opt,
                ssh_opt=m.ssh_opt,
                result_id=self.refs[i],
                # The daemon assigns inputs and outputs itself (protocol notes §4.3).
                input=-1,
                output=-1,
            )
            for i, m in enumerate(self.exec.mounts)
        ]
        return gw.NewContainerRequest(
            container_id=container_id,
            mounts=mounts,
            network=self.exec.network,
            platform=self.platform,
            constraints=self.constraints,
            extra_hosts=list(meta.extra_hosts),
            hostname=meta.hostname,
        )

    def writable_mounts(self) -> list[str]:
        """Destinations of the mounts whose changes are the exec's outputs (writable binds)."""
        return [
            m.dest
            for m in self.exec.mounts
            if m.mount_type == pb.MountType.BIND and not m.readonly and m.output >= 0
        ]


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v if isinstance(v, str) else "" for v in value]


def input_definition(definition: pb.Definition, head: str, index: int) -> pb.Definition:
    """``definition`` cut so that its result is input ``index`` of op ``head`` (not ``head`` itself)."""
    ops = [d for d in definition.def_[:-1]]
    by_digest = {_digest(d): d for d in ops}
    head_op = pb.Op.parse(by_digest[head])
    target = head_op.inputs[index]
    kept = [d for d in ops if _digest(d) != head]
    terminal = bytes(pb.Op(inputs=[pb.Input(digest=target.digest, index=target.index)]))
    metadata = {k: v for k, v in definition.metadata.items() if k != head}
    return pb.Definition(def_=[*kept, terminal], metadata=metadata, source=definition.source)
