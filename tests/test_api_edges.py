"""Rough edges of the API, against the real daemon: late attachables, typed export
results, the content-tracking defaults of ``llb.local`` and ``Solver.local``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpclib.const
import pytest

import llblib_async
from llblib_async import LateAttachableError, Result, Solver, llb
from llblib_async.testing import BuildkitDaemon

pytestmark = pytest.mark.asyncio(loop_scope="session")


class _Nothing:
    """An attachable serving no method."""

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {}


async def test_add_attachable_while_a_session_is_open_raises_naming_it(
    buildkit_daemon: BuildkitDaemon, tmp_path: Path
) -> None:
    solver = Solver()
    early, late = _Nothing(), _Nothing()
    solver.add_attachable(early)
    async with llblib_async.connect(buildkit_daemon.address) as client:
        async with solver.session(client) as session:
            with pytest.raises(LateAttachableError) as caught:
                solver.add_attachable(late)
            assert caught.value.attachable is late
            assert repr(late) in str(caught.value)
            assert isinstance(caught.value, RuntimeError)
            # nothing was registered, and the session still works (locals still may be added)
            assert solver.attachables == (early,)
            (tmp_path / "ctx").mkdir()
            (tmp_path / "ctx" / "f").write_text("late local")
            seen: list[bytes] = []

            async def read(result: Result) -> None:
                seen.append(await result.read_file("/f"))

            state = llb.scratch().copy(solver.local(tmp_path / "ctx"), "/", "/")
            await asyncio.wait_for(session.do(solver.build(state, on_result=read)), 60)
            assert seen == [b"late local"]
        # once the session closed, a new one serves it
        solver.add_attachable(late)
        assert len(solver.attachables) == 2
        assert solver.attachables[-1] is late
        async with solver.session(client) as session:
            await asyncio.wait_for(
                session.do(solver.build(llb.scratch().mkfile("/x", str(time.time_ns())))), 60
            )
