"""containerd drives the runtime through its runc shim (io.containerd.runc.v2), the way
Kubernetes would. One private containerd (no CRI plugin; root, state, sockets in a temp
dir) per module; an image made offline from the host's busybox (a docker-archive tar)
is imported with `ctr image import`; each test runs under runc and hutch-runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bundles import (
    HUTCH_RUNTIME,
    PREFIX,
    RUNC,
    find_processes,
    remove_cgroup,
    unmount_under,
)

pytestmark = pytest.mark.integration

NAMESPACE = "hutchtest"
IMAGE = "docker.io/hutchtest/busybox:latest"
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


# -- image ------------------------------------------------------------------------------
def _layer_tar(rootfs: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def build_docker_archive(rootfs: Path, dest: Path, tag: str = IMAGE) -> Path:
    """A `docker save`-style tar: manifest.json, the image config and one layer."""
    layer = _layer_tar(rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hutch tests"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [tag.removeprefix("docker.io/")],
                 "Layers": [layer_name]}]
    with tarfile.open(dest, "w") as tar:
        for name, data in (
            (config_name, config_bytes),
            (layer_name, layer),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest


# -- containerd -----------------------------------------------------------------------
@dataclass
class Containerd:
    base: Path
    address: str
    proc: subprocess.Popen

    def ctr(self, *args: str, timeout: float = 60, input: bytes | None = None):
        return subprocess.run(
            [CTR, "-a", self.address, "-n", NAMESPACE, *args],
            capture_output=True, timeout=timeout, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def ctr_ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        res = self.ctr(*args, **kw)
        assert res.returncode == 0, f"ctr {' '.join(args)}: {res.stderr.decode()}"
        return res


def _config(base: Path, address: str) -> str:
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = "{base}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


@pytest.fixture(scope="module")
def containerd(busybox_rootfs) -> Iterator[Containerd]:
    if CONTAINERD is None or CTR is None:
        pytest.skip("needs containerd and ctr (apt-get install containerd)")
    base = Path(tempfile.mkdtemp(prefix="hcd-", dir="/tmp"))  # short: socket paths
    address = str(base / "c.sock")
    (base / "config.toml").write_text(_config(base, address))
    log = open(base / "containerd.log", "wb")
    proc = subprocess.Popen(
        [CONTAINERD, "--config", str(base / "config.toml")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    cd = Containerd(base, address, proc)
    try:
        deadline = time.monotonic() + 30
        while cd.ctr("version", timeout=5).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("containerd did not start:\n"
                            + (base / "containerd.log").read_text()[-3000:])
            time.sleep(0.1)
        archive = build_docker_archive(busybox_rootfs, base / "image.tar")
        cd.ctr_ok("image", "import", str(archive))
        yield cd
    finally:
        _stop_containerd(cd)
        log.close()


def _stop_containerd(cd: Containerd) -> None:
    # tasks and containers first, so the shims exit and unmount the rootfs
    res = cd.ctr("task", "ls", "-q", timeout=20)
    for cid in res.stdout.decode().split() if res.returncode == 0 else []:
        cd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=20)
        time.sleep(0.2)
        cd.ctr("task", "delete", "-f", cid, timeout=20)
    res = cd.ctr("containers", "ls", "-q", timeout=20)
    for cid in res.stdout.decode().split() if res.returncode == 0 else []:
        cd.ctr("containers", "rm", cid, timeout=20)
    cd.ctr("image", "rm", IMAGE, timeout=20)
    cd.proc.send_signal(signal.SIGTERM)
    try:
        cd.proc.wait(15)
    except subprocess.TimeoutExpired:
        cd.proc.kill()
        cd.proc.wait()
    # shims outlive containerd by design: find ours by the address in their argv
    for pid in find_processes([], [cd.address, str(cd.base)]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    unmount_under([cd.base, Path("/run/containerd/io.containerd.runtime.v2.task") / NAMESPACE])
    shutil.rmtree(cd.base, ignore_errors=True)
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        try:
            (ctrl / NAMESPACE).rmdir()
        except OSError:
            pass


@dataclass
class CtrRuntime:
    name: str
    binary: str
    root: Path
    cgroup: str


@pytest.fixture
def ctr_runtime(runtime_name: str, containerd: Containerd) -> Iterator[CtrRuntime]:
    binary = RUNC if runtime_name == "runc" else HUTCH_RUNTIME
    if not Path(binary).exists():
        pytest.skip(f"{runtime_name} not installed at {binary}")
    root = Path(tempfile.mkdtemp(prefix=f"hcr-{runtime_name[:5]}-", dir="/tmp"))
    rt = CtrRuntime(runtime_name, binary, root, f"/{PREFIX}-ctr-{secrets.token_hex(5)}")
    try:
        yield rt
    finally:
        unmount_under([root])
        remove_cgroup(rt.cgroup)
        shutil.rmtree(root, ignore_errors=True)


def _run_args(rt: CtrRuntime, cid: str) -> list[str]:
    return ["--runc-binary", rt.binary, "--runc-root", str(rt.root),
            "--cgroup", f"{rt.cgroup}/{cid}"]


def _cid() -> str:
    return f"{PREFIX}-ctr-{secrets.token_hex(5)}"


def test_ctr_run_rm_echo_hello(containerd, ctr_runtime):
    cid = _cid()
    res = containerd.ctr("run", "--rm", *_run_args(ctr_runtime, cid), IMAGE, cid, "echo", "hello")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b"hello\n"
    assert containerd.ctr("containers", "info", cid).returncode != 0, "--rm left the container"


def test_ctr_run_reports_the_exit_code(containerd, ctr_runtime):
    cid = _cid()
    res = containerd.ctr("run", "--rm", *_run_args(ctr_runtime, cid), IMAGE, cid,
                         "sh", "-c", "echo out; exit 3")
    assert res.stdout == b"out\n", res.stderr.decode()
    assert res.returncode == 3


def test_ctr_run_passes_stdin(containerd, ctr_runtime):
    cid = _cid()
    res = containerd.ctr("run", "--rm", *_run_args(ctr_runtime, cid), IMAGE, cid,
                         "sh", "-c", "read x; echo got:$x", input=b"typed\n")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b"got:typed\n"


def _has_exec(binary: str) -> bool:
    return subprocess.run([binary, "exec", "--help"], capture_output=True).returncode == 0


def _wait_task_status(cd: Containerd, cid: str, want: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        for line in cd.ctr("task", "ls").stdout.decode().splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                status = f[-1]
        if status == want:
            break
        time.sleep(0.1)
    return status


def test_ctr_detached_task_kill_and_delete(containerd, ctr_runtime):
    cid = _cid()
    containerd.ctr_ok("run", "-d", *_run_args(ctr_runtime, cid), IMAGE, cid, "sleep", "300")
    try:
        assert _wait_task_status(containerd, cid, "RUNNING") == "RUNNING"
        containerd.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
        assert _wait_task_status(containerd, cid, "STOPPED") == "STOPPED"
        containerd.ctr_ok("task", "delete", cid)
    finally:
        containerd.ctr("task", "delete", "-f", cid)
        containerd.ctr("containers", "rm", cid)
    assert containerd.ctr("containers", "info", cid).returncode != 0


def test_ctr_task_exec_in_a_detached_container(containerd, ctr_runtime):
    if not _has_exec(ctr_runtime.binary):
        pytest.skip(f"{ctr_runtime.name} has no `exec` verb yet (a later issue); "
                    "`ctr task exec` needs it")
    cid = _cid()
    containerd.ctr_ok("run", "-d", *_run_args(ctr_runtime, cid), IMAGE, cid, "sleep", "300")
    try:
        assert _wait_task_status(containerd, cid, "RUNNING") == "RUNNING"
        res = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "echo", "hi")
        assert res.returncode == 0, res.stderr.decode()
        assert res.stdout == b"hi\n"
        res = containerd.ctr("task", "exec", "--exec-id", "e2", cid, "sh", "-c", "exit 5")
        assert res.returncode == 5
        containerd.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
        assert _wait_task_status(containerd, cid, "STOPPED") == "STOPPED"
        containerd.ctr_ok("task", "delete", cid)
    finally:
        containerd.ctr("task", "delete", "-f", cid)
        containerd.ctr("containers", "rm", cid)
