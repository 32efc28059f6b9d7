"""How a build script hands its requests to ``llblib-async build`` and ``dump``.

A build script is an ordinary Python file.  The CLI runs it as a module (its
``__name__`` is ``"__llblib_script__"``, so an ``if __name__ == "__main__":`` block
does not run) and calls the function it defines::

    def build_requests(solver: llblib_async.Solver) -> Iterable[llblib_async.Request | llb.State]:
        base = llb.image(os.environ["BASE_IMAGE"])
        yield solver.build(base.run("make").root, label="app")

``build_requests`` takes the :class:`~llblib_async.Solver` of the CLI's session (for
``solver.local(...)``, attachables, ``solver.build(..., exports=...)``) and returns, yields
or (``async def``) returns one or several :class:`~llblib_async.Request` values or
:class:`~llblib_async.llb.State` graphs.  A State becomes ``solver.build(state)``.
Requests without a label get ``"1"``, ``"2"``… when there are several.  The same script
stays runnable on its own with a ``__main__`` block that opens a session itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import runpy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import llb
from ..request import Request
from ..solver import Solver

__all__ = ["ENTRY_POINT", "SCRIPT_NAME", "ScriptError", "load_requests"]

ENTRY_POINT = "build_requests"
SCRIPT_NAME = "__llblib_script__"


class ScriptError(Exception):
    """The script could not be run or does not follow the convention (exit code 4)."""


async def load_requests(path: Path, solver: Solver, **options: Any) -> list[Request]:
    """Run the script at ``path`` and return its requests (``options`` added to each).

    Raises :class:`ScriptError` naming the script when it is missing, raises while being
    loaded, lacks ``build_requests``, or returns something other than requests and States.
    """
    if not path.is_file():  # noqa: ASYNC240 (one stat before running the script)
        raise ScriptError(f"{path}: no such build script")
    try:
        namespace = runpy.run_path(str(path), run_name=SCRIPT_NAME)
    except SystemExit as err:
        raise ScriptError(f"{path}: the script exited ({err.code}) while being loaded") from err
    except Exception as err:
        raise ScriptError(f"{path}: the script raised {type(err).__name__}: {err}") from err
    entry = namespace.get(ENTRY_POINT)
    if not callable(entry):
        raise ScriptError(f"{path}: defines no function {ENTRY_POINT}(solver) returning its requests")
    try:
        produced = entry(solver)
        if inspect.isawaitable(produced):
            produced = await produced
        if inspect.isasyncgen(produced):
            items: list[object] = [x async for x in produced]
        elif isinstance(produced, Request | llb.State | llb.Definition):
            items = [produced]
        elif isinstance(produced, Iterable):
            items = list(produced)
        else:
            raise ScriptError(
                f"{path}: {ENTRY_POINT}() returned {type(produced).__name__}, "
                "not requests or States (or an iterable of them)"
            )
    except ScriptError:
        raise
    except Exception as err:
        raise ScriptError(f"{path}: {ENTRY_POINT}() raised {type(err).__name__}: {err}") from err
    requests: list[Request] = []
    for i, item in enumerate(items):
        if isinstance(item, Request):
            if options:
                item = dataclasses.replace(item, **options)
            requests.append(item)
        elif isinstance(item, llb.State | llb.Definition):
            requests.append(solver.build(item, **options))
        else:
            raise ScriptError(
                f"{path}: item {i} of {ENTRY_POINT}() is a {type(item).__name__}, not a Request or State"
            )
    if not requests:
        raise ScriptError(f"{path}: {ENTRY_POINT}() returned no requests")
    if len(requests) > 1:
        requests = [
            r if r.label else dataclasses.replace(r, label=str(i + 1)) for i, r in enumerate(requests)
        ]
    return requests
