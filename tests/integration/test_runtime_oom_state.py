"""An OOM-killed container says so in `state` (hutch-runtime's extra "oomKilled")."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_state_of_an_oom_killed_container_says_oom_killed(runtime, new_bundle):
    if runtime.name != "hutch-runtime":
        pytest.skip("runc's state has no such field")
    bundle = new_bundle("sh", "-c", "tail /dev/zero")
    bundle.spec["linux"]["resources"]["memory"] = {"limit": 32 << 20, "swap": 32 << 20}
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok
    runtime.check("start", cid)
    assert runtime.wait_status(cid, "stopped", timeout=20) == "stopped"
    assert runtime.state(cid).get("oomKilled") is True


def test_state_of_a_container_that_exited_normally_has_no_oom_flag(runtime, new_bundle):
    if runtime.name != "hutch-runtime":
        pytest.skip("runc's state has no such field")
    bundle = new_bundle("true")
    cid = runtime.new_id()
    assert runtime.create(bundle, cid).ok
    runtime.check("start", cid)
    assert runtime.wait_status(cid, "stopped") == "stopped"
    assert "oomKilled" not in runtime.state(cid)
