"""containerd drives the runtime through its runc shim (io.containerd.runc.v2), the way
Kubernetes would. One private containerd (no CRI plugin; root, state, sockets in a temp
dir) per module; an image made offline from the host's busybox (a docker-archive tar)
is imported with `ctr image import`; each test runs under runc and hutch-runtime.

Besides run/exec/kill/delete, the shim's other calls into the runtime are exercised:
`ctr task exec -t` (exec --console-socket, driven from a pty), `ctr task pause/resume`
(pause/resume), `ctr task ps` (ps --format json) and a resource update (update
--resources -; this ctr, 1.6, has no `task update`, so the Tasks.Update gRPC call is
made by hand). `ctr run --memory-limit` and `ctr task metrics` check the runtime put the
task in the cgroup containerd asked for: the 1.6 shim reads stats and watches for OOM
on that cgroup itself, it does not call `runtime events`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bundles import (
    HUTCH_RUNTIME,
    PREFIX,
    RUNC,
    cgroup_controllers,
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


# -- the shim's other calls: memory limit and OOM, exec with a tty, pause/resume, ps,
# -- metrics, update ----------------------------------------------------------------------
def _task_cgroup_file(rt: CtrRuntime, cid: str, ctrl: str, name: str) -> Path:
    """A file of the task's cgroup (cgroupsPath = <rt.cgroup>/<cid>, from ctr --cgroup)."""
    ctrls = cgroup_controllers()
    base = ctrls[ctrl] if ctrl in ctrls else ctrls["unified"]
    return base / rt.cgroup.lstrip("/") / cid / name


def _v2_only() -> bool:
    ctrls = cgroup_controllers()
    return "memory" not in ctrls and "unified" in ctrls


@contextlib.contextmanager
def _detached(cd: Containerd, rt: CtrRuntime, *args: str, run_opts: tuple[str, ...] = ()):
    """`ctr run -d` a task; killed and deleted (with its container) afterwards."""
    cid = _cid()
    cd.ctr_ok("run", "-d", *run_opts, *_run_args(rt, cid), IMAGE, cid, *args)
    try:
        assert _wait_task_status(cd, cid, "RUNNING") == "RUNNING"
        yield cid
    finally:
        cd.ctr("task", "resume", cid, timeout=20)  # a paused task does not die of KILL
        cd.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, timeout=20)
        _wait_task_status(cd, cid, "STOPPED", timeout=5)
        cd.ctr("task", "delete", "-f", cid, timeout=20)
        cd.ctr("containers", "rm", cid, timeout=20)


class _CtrEvents:
    """`ctr events` in the background, its lines collected by a thread."""

    def __init__(self, cd: Containerd) -> None:
        self.proc = subprocess.Popen(
            [CTR, "-a", cd.address, "-n", NAMESPACE, "events"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, *needles: str, timeout: float = 10) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if all(n in line for n in needles):
                    return line
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()


def test_ctr_run_memory_limit_is_set_and_a_hog_is_oom_killed(containerd, ctr_runtime):
    limit = 16 << 20
    events = _CtrEvents(containerd)
    try:
        with _detached(containerd, ctr_runtime, "sleep", "300",
                       run_opts=("--memory-limit", str(limit))) as cid:
            if _v2_only():
                got = _task_cgroup_file(ctr_runtime, cid, "memory", "memory.max")
            else:
                got = _task_cgroup_file(ctr_runtime, cid, "memory", "memory.limit_in_bytes")
            assert got.read_text().strip() == str(limit)
            res = containerd.ctr("task", "exec", "--exec-id", "hog", cid,
                                 "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
            assert res.returncode == 137, (res.returncode, res.stderr.decode())
            # the shim watches the task's cgroup (memory.oom_control / memory.events) and
            # publishes /tasks/oom, whatever runtime made the cgroup
            line = events.wait_for("/tasks/oom", cid)
            assert line, f"no /tasks/oom event for {cid}: {events.lines[-10:]}"
            assert _wait_task_status(containerd, cid, "RUNNING") == "RUNNING"
    finally:
        events.stop()


def _under_pty(argv: list[str]) -> tuple[int, bytes]:
    """Run argv with a pty as its stdin/stdout/stderr and controlling terminal, the way
    a user's terminal runs `ctr task exec -t`; return (exit code, what it wrote)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once ctr exited and the slave side closed
            break
        if not chunk:
            break
        out += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_ctr_task_exec_with_a_tty(containerd, ctr_runtime):
    if not _has_exec(ctr_runtime.binary):
        pytest.skip(f"{ctr_runtime.name} has no `exec` verb")
    with _detached(containerd, ctr_runtime, "sleep", "300") as cid:
        argv = [CTR, "-a", containerd.address, "-n", NAMESPACE, "task", "exec", "-t",
                "--exec-id", "tty1", cid, "sh", "-c", "tty; echo done; exit 7"]
        code, out = _under_pty(argv)
        text = out.decode(errors="replace")
        # the container has its own devpts: the exec's terminal is one of its ptys
        assert re.search(r"^/dev/pts/\d+\r*$", text, re.M), text
        assert "done\r" in text, text  # a terminal: the line discipline adds \r
        assert code == 7, (code, text)


def test_ctr_task_pause_and_resume(containerd, ctr_runtime):
    with _detached(containerd, ctr_runtime, "sh", "-c", "sleep 300 & sleep 301") as cid:
        containerd.ctr_ok("task", "pause", cid)
        assert _wait_task_status(containerd, cid, "PAUSED") == "PAUSED"
        if _v2_only():
            frozen = _task_cgroup_file(ctr_runtime, cid, "freezer", "cgroup.freeze")
            assert frozen.read_text().strip() == "1"
        else:
            frozen = _task_cgroup_file(ctr_runtime, cid, "freezer", "freezer.state")
            assert frozen.read_text().strip() == "FROZEN"
        containerd.ctr_ok("task", "resume", cid)
        assert _wait_task_status(containerd, cid, "RUNNING") == "RUNNING"
        assert frozen.read_text().strip() in ("THAWED", "0")
        if _has_exec(ctr_runtime.binary):
            res = containerd.ctr("task", "exec", "--exec-id", "after", cid, "echo", "alive")
            assert res.stdout == b"alive\n", res.stderr.decode()


def test_ctr_task_ps_lists_the_tasks_processes(containerd, ctr_runtime):
    with _detached(containerd, ctr_runtime, "sh", "-c", "sleep 300 & sleep 301") as cid:
        procs = _task_cgroup_file(ctr_runtime, cid, "pids", "cgroup.procs")
        deadline = time.monotonic() + 5
        while len(procs.read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        res = containerd.ctr_ok("task", "ps", cid)
        lines = res.stdout.decode().splitlines()
        assert lines[0].split() == ["PID", "INFO"], lines
        pids = sorted(int(line.split()[0]) for line in lines[1:] if line.strip())
        assert pids == sorted(int(p) for p in procs.read_text().split())
        assert len(pids) == 2


def test_ctr_task_metrics_reads_the_tasks_cgroup(containerd, ctr_runtime):
    """containerd 1.6's shim reads the stats from the cgroup of the task's init (it
    does not call `runtime events --stats`), so this checks the runtime put the init
    in the cgroup ctr asked for, with the limits it asked for."""
    limit = 48 << 20
    with _detached(containerd, ctr_runtime, "sh", "-c", "sleep 300 & sleep 301",
                   run_opts=("--memory-limit", str(limit))) as cid:
        time.sleep(0.2)
        res = containerd.ctr_ok("task", "metrics", cid)
        table = res.stdout.decode()
        rows = {}
        for line in table.splitlines():
            f = line.split(None, 1)
            if len(f) == 2:
                rows[f[0]] = f[1].strip()
        res = containerd.ctr_ok("task", "metrics", "--format", "json", cid)
        data = json.loads(res.stdout)
        if _v2_only():
            assert rows.get("memory.usage_limit") == str(limit), table
            assert data["memory"]["usage_limit"] == limit
        else:
            assert rows.get("memory.limit_in_bytes") == str(limit), table
            assert data["memory"]["usage"]["limit"] == limit
            assert int(rows["cpuacct.usage"]) > 0, table
        assert rows.get("pids.current") == "2", table
        assert data["pids"]["current"] == 2


# ctr 1.6 has no `ctr task update`, so the Tasks.Update RPC is called directly: a gRPC
# unary call over HTTP/2 on containerd's socket, written out below (no grpc library
# here). containerd hands the resources to the shim, which runs
# `<runtime> update --resources -` with them: the path kubelet's resource updates take.
def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _pb_bytes(field_no: int, data: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(data)) + data


def _hpack_int(n: int) -> bytes:  # 7-bit prefix, no Huffman (H bit 0)
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def _hpack_literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return (b"\x00" + _hpack_int(len(name)) + name.encode()
            + _hpack_int(len(value)) + value.encode())


def _h2_frame(type_: int, flags: int, stream: int, payload: bytes) -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes([type_, flags]) + stream.to_bytes(4, "big")
    return head + payload


def grpc_unary(address: str, path: str, message: bytes, metadata: dict[str, str],
               timeout: float = 20) -> bytes:
    """Call a unary gRPC method; return the response message or raise AssertionError
    (trailers-only answer = an error status; its text is HPACK-Huffman coded, so the
    caller points at containerd's log instead)."""
    headers = b"".join(_hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path),
        (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
        *metadata.items(),
    ])
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"")
                     + _h2_frame(1, 0x4, 1, headers)  # HEADERS, END_HEADERS
                     + _h2_frame(0, 0x1, 1, body))  # DATA, END_STREAM
        buf, data = b"", b""

        def read(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError("containerd closed the connection")
                buf += chunk
            out, buf = buf[:n], buf[n:]
            return out

        while True:
            head = read(9)
            length, type_, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = read(length)
            if type_ == 4 and not flags & 0x1:  # SETTINGS: acknowledge
                sock.sendall(_h2_frame(4, 0x1, 0, b""))
            elif type_ == 6 and not flags & 0x1:  # PING: answer
                sock.sendall(_h2_frame(6, 0x1, 0, payload))
            elif type_ == 0 and stream == 1:
                data += payload
            elif type_ == 1 and stream == 1 and flags & 0x1:  # trailers: done
                if len(data) < 5:
                    raise AssertionError(f"{path}: error status (trailers-only response)")
                return data[5:5 + int.from_bytes(data[1:5], "big")]
            elif type_ in (3, 7):  # RST_STREAM, GOAWAY
                raise AssertionError(f"{path}: HTTP/2 frame type {type_}: {payload!r}")


def _update_task(cd: Containerd, cid: str, resources: dict) -> None:
    any_ = (_pb_bytes(1, b"types.containerd.io/opencontainers/runtime-spec/1/LinuxResources")
            + _pb_bytes(2, json.dumps(resources).encode()))
    request = _pb_bytes(1, cid.encode()) + _pb_bytes(2, any_)  # UpdateTaskRequest
    try:
        grpc_unary(cd.address, "/containerd.services.tasks.v1.Tasks/Update", request,
                   {"containerd-namespace": NAMESPACE})
    except AssertionError as exc:
        log = (cd.base / "containerd.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\ncontainerd log:\n{log}") from None


def test_tasks_update_rpc_through_the_shim_changes_the_tasks_cgroup(containerd, ctr_runtime):
    res = containerd.ctr("task", "update", "--help")
    if res.returncode == 0 and b"memory-limit" in res.stdout:
        pytest.fail("this ctr has `task update`: test it with ctr instead of raw gRPC")
    with _detached(containerd, ctr_runtime, "sleep", "300",
                   run_opts=("--memory-limit", str(64 << 20))) as cid:
        _update_task(containerd, cid, {
            "memory": {"limit": 32 << 20},
            "cpu": {"shares": 256, "quota": 20000, "period": 50000},
            "pids": {"limit": 20},
        })
        if _v2_only():
            files = {"memory": ("memory", "memory.max"), "cpu": ("cpu", "cpu.max"),
                     "pids": ("pids", "pids.max")}
            want = {"memory": str(32 << 20), "cpu": "20000 50000", "pids": "20"}
        else:
            files = {"memory": ("memory", "memory.limit_in_bytes"),
                     "quota": ("cpu", "cpu.cfs_quota_us"), "period": ("cpu", "cpu.cfs_period_us"),
                     "shares": ("cpu", "cpu.shares"), "pids": ("pids", "pids.max")}
            want = {"memory": str(32 << 20), "quota": "20000", "period": "50000",
                    "shares": "256", "pids": "20"}
        got = {k: _task_cgroup_file(ctr_runtime, cid, c, f).read_text().strip()
               for k, (c, f) in files.items()}
        assert got == want
        res = containerd.ctr("task", "metrics", "--format", "json", cid)
        if not _v2_only():
            assert json.loads(res.stdout)["memory"]["usage"]["limit"] == 32 << 20
