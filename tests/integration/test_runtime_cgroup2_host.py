"""hutch-runtime on a cgroup v2 host, simulated: in a private mount namespace the v1
hierarchies are unmounted and cgroup2 is mounted at /sys/fs/cgroup, so the runtime sees
a pure v2 host (its detection reads /proc/self/mountinfo). This host's cgroup2 has no
controllers (v1 holds them), so the test checks placement, not limits: the container is
born in its cgroup2 directory, limits it cannot apply are refused clearly, and delete
removes the directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)"),
]

UNIFIED = "/sys/fs/cgroup/unified"


def _in_v2_world(script: str) -> subprocess.CompletedProcess:
    prologue = (
        "set -e; mount --make-rprivate /; "
        "for m in $(awk '$9==\"cgroup\"||$9==\"cgroup2\" {print $5}' /proc/self/mountinfo "
        "| sort -r); do umount -l \"$m\"; done; "
        "umount -l /sys/fs/cgroup 2>/dev/null || true; "
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup; set +e; "
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", prologue + script],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def cg_name():
    name = f"hutch-test-v2-{uuid.uuid4().hex[:8]}"
    yield name
    path = os.path.join(UNIFIED, name)
    if os.path.isdir(path):
        for pid in open(os.path.join(path, "cgroup.procs")).read().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        os.rmdir(path)


@pytest.mark.skipif(not os.path.isdir(UNIFIED), reason="needs the hybrid unified mount")
def test_container_is_born_in_its_cgroup2_directory_and_delete_removes_it(
        runtime, new_bundle, cg_name):
    if runtime.name != "hutch-runtime":
        pytest.skip("runc's v2 path is not what this checks")
    bundle = new_bundle("sh", "-c", "grep '^0::' /proc/self/cgroup")
    bundle.spec["linux"]["cgroupsPath"] = f"/{cg_name}"
    # The spec's default "deny all devices" needs eBPF on v2: keep resources empty.
    bundle.spec["linux"]["resources"] = {}
    bundle.write()
    cid = runtime.new_id()
    run = (f"{runtime.binary} --root {runtime.root} run --bundle {bundle.path} {cid}; "
           f"echo rc=$?; test -d /sys/fs/cgroup/{cg_name} && echo left || echo gone")
    p = _in_v2_world(run)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines == [f"0::/{cg_name}", "rc=0", "gone"], (p.stdout, p.stderr)
    assert not os.path.isdir(os.path.join(UNIFIED, cg_name))


@pytest.mark.skipif(not os.path.isdir(UNIFIED), reason="needs the hybrid unified mount")
def test_a_limit_the_v2_host_cannot_apply_is_refused_clearly(runtime, new_bundle, cg_name):
    if runtime.name != "hutch-runtime":
        pytest.skip("hutch-runtime's own message")
    bundle = new_bundle("true")
    bundle.spec["linux"]["cgroupsPath"] = f"/{cg_name}"
    bundle.spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle.write()
    cid = runtime.new_id()
    p = _in_v2_world(f"{runtime.binary} --root {runtime.root} run --bundle {bundle.path} "
                     f"{cid}; echo rc=$?; ls {runtime.root}")
    assert "rc=1" in p.stdout, (p.stdout, p.stderr)
    assert "memory" in p.stderr and p.stderr.strip().count("\n") <= 1, p.stderr
    assert cid not in p.stdout.split("rc=1")[1]
    assert not os.path.isdir(os.path.join(UNIFIED, cg_name))
