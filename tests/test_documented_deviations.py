"""The two deviations from Go llblib that docs/image-config.md and the README's Go table
describe: the image config's os/architecture, and mkdir/mkfile modes outside 0o777."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from llblib_async import llb
from llblib_async.llb import config_ops as co
from llblib_async.llb.platform import default_platform

Option = Callable[[llb.State], llb.State]

STEPS: list[Option] = [co.cmd("/app"), co.add_label("a", "b"), co.add_envs({"K": "v"}), co.default_dir("/w")]


def _os_arch(state: llb.State) -> tuple[str, str]:
    config = json.loads(co.marshal_with_image_config(state).config_json or b"{}")
    return config.get("os", ""), config.get("architecture", "")


@pytest.mark.parametrize(
    "order", [STEPS, STEPS[::-1], STEPS[:1], STEPS[2:]], ids=["all", "reversed", "one", "two"]
)
def test_config_platform_is_the_states_whatever_the_steps(order: list[Option]) -> None:
    arm = llb.scratch().apply(co.platform("linux/arm64"), *order)
    assert _os_arch(arm) == ("linux", "arm64")
    host = default_platform()
    assert _os_arch(llb.scratch().apply(*order)) == (host.os, host.architecture)  # never empty


@pytest.mark.parametrize("mode", [0o4755, 0o1777, 0o2755])
def test_mkdir_and_mkfile_refuse_modes_go_would_mask(mode: int) -> None:
    with pytest.raises(ValueError, match=f"bad mkdir mode {mode:#o}"):
        llb.scratch().mkdir("/d", mode)
    with pytest.raises(ValueError, match=f"bad mkfile mode {mode:#o}"):
        llb.scratch().mkfile("/f", "x", mode=mode)
    assert llb.marshal(llb.scratch().mkdir("/d", mode & 0o777))  # what Go would have made
