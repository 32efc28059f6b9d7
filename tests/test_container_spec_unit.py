"""ContainerSpec, the sans-IO description of a container on the build worker (no daemon)."""

from __future__ import annotations

import pytest

from llblib_async._pb import pb
from llblib_async.gateway.container_spec import ContainerSpec


def spec(*mounts: tuple[str, str], unresolved: dict[int, int] | None = None) -> ContainerSpec:
    return ContainerSpec(
        exec=pb.ExecOp(
            meta=pb.Meta(args=["/bin/sh"], env=["A=1"]), mounts=[pb.Mount(dest=d) for d, _ in mounts]
        ),
        refs=tuple(ref for _, ref in mounts),
        unresolved=unresolved or {},
    )


def mounts(s: ContainerSpec) -> list[tuple[str, str]]:
    return [(m.dest, ref) for m, ref in zip(s.exec.mounts, s.refs, strict=True)]


def test_extra_mounts_are_added_in_path_order_and_replace_the_same_path() -> None:
    failed = spec(("/", "root-ref"), ("/work", "work-ref"), ("/work/sub", "sub-ref"))
    extra = spec(("/", "toolbox-ref"), ("/a", "a-ref"), ("/work/sub", "new-sub-ref"), ("/work/b", "b-ref"))
    kept = failed.with_mounts_of(extra, root=False)
    assert mounts(kept) == [
        ("/", "root-ref"),
        ("/a", "a-ref"),
        ("/work", "work-ref"),
        ("/work/b", "b-ref"),
        ("/work/sub", "new-sub-ref"),
    ]
    assert kept.exec.meta == failed.exec.meta  # the failed step's process settings stay
    swapped = failed.with_mounts_of(extra, root=True)
    assert mounts(swapped)[0] == ("/", "toolbox-ref")
    assert mounts(failed) == [("/", "root-ref"), ("/work", "work-ref"), ("/work/sub", "sub-ref")]  # unchanged


def test_unsolved_mounts_cannot_be_taken_over() -> None:
    with pytest.raises(ValueError, match="solved"):
        spec(("/", "r")).with_mounts_of(spec(("/x", ""), unresolved={0: 0}), root=False)
