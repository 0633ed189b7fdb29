"""Fixtures for the engine's end-to-end tests: the installed `hutch`, run as a user would,
on images pushed to a docker-registry on 127.0.0.1 and pulled from there.

One store per session (pulling once), a fresh container namespace per test: the `hutch`
fixture removes every container a test left and then checks that nothing of them is left
on the host (mounts under the run dir, cgroups named after them, monitor processes).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HUTCH = REPO / ".venv" / "bin" / "hutch"
sys.path.insert(0, str(REPO / "tests" / "integration"))

import registry_fixtures as rf  # noqa: E402

from hutch.engine import cgparent  # noqa: E402
from hutch.linux import libc  # noqa: E402
from hutch.network import netns  # noqa: E402

BUSYBOX = Path("/bin/busybox")
MTIME = 1700000000


def _applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True).stdout
    return sorted({a for a in out.split() if a and "/" not in a and a != "busybox"})


def busybox_full_layer(extra: dict[str, tuple[str, int]] | None = None,
                       dirs: tuple[str, ...] = ()) -> bytes:
    """Every busybox applet as a symlink, /etc/passwd and /etc/group with root, nobody
    and a user "app" (uid 1000, groups app and extra), and `extra` files {path: (text,
    mode)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, MTIME
            tar.addfile(ti)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
            tar.addfile(ti, io.BytesIO(data))

        for d in ("bin", "dev", "etc", "proc", "root", "sys", "tmp", "usr", "usr/bin",
                  "var", "home", "home/app", *dirs):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in _applets():
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, "busybox", MTIME
            tar.addfile(ti)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                               b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                               b"app:x:1000:1000:app:/home/app:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:1001:app\n")
        for path, (text, mode) in (extra or {}).items():
            add_file(path, text.encode(), mode)
    return buf.getvalue()


def build_layout(dest: Path, tag: str, layer_tar: bytes, config: dict) -> None:
    import gzip
    import hashlib

    def sha(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    layer = gzip.compress(layer_tar, compresslevel=1, mtime=0)
    cfg = json.dumps({
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hutch e2e"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": rf.OCI_MANIFEST,
        "config": {"mediaType": rf.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
        "layers": [{"mediaType": rf.OCI_LAYER_GZIP, "digest": sha(layer),
                    "size": len(layer)}],
    }).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in (layer, cfg, manifest):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "mediaType": rf.OCI_INDEX, "manifests": []}
    index["manifests"].append({
        "mediaType": rf.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))


PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# e2e/busybox:latest — a plain image. e2e/busybox:config — every run default set.
IMAGES = {
    "latest": ({}, (), {"Env": [PATH_ENV], "Cmd": ["sh"]}),
    "config": (
        {"data/seed.txt": ("seeded by the image\n", 0o644),
         "work/hello.sh": ("#!/bin/sh\necho hello from $FROM_IMAGE in $(pwd) as $(id -un)\n",
                           0o755)},
        ("data", "work"),
        {"Env": [PATH_ENV, "FROM_IMAGE=image-env", "OVERRIDE=image"],
         "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["/work/hello.sh"], "WorkingDir": "/work",
         "User": "app", "StopSignal": "SIGUSR1", "Volumes": {"/data": {}},
         "Labels": {"org.example.from": "image"}},
    ),
}


class Hutch:
    """The installed `hutch` with this session's --root/--run."""

    def __init__(self, root: Path, run: Path, registry: str) -> None:
        self.root, self.run_dir, self.registry = root, run, registry
        self.image = f"{registry}/e2e/busybox:latest"
        self.config_image = f"{registry}/e2e/busybox:config"

    def argv(self, *args: str) -> list[str]:
        return [str(HUTCH), "--root", str(self.root), "--run", str(self.run_dir),
                *[str(a) for a in args]]

    def __call__(self, *args: str, timeout: float = 60, check: bool = False,
                 input: str | None = None, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run(self.argv(*args), capture_output=True, text=True,
                           timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"hutch {' '.join(map(str, args))} exited {p.returncode}: "
                                 f"{p.stderr.strip()}")
        return p

    def out(self, *args: str, **kw) -> str:
        return self(*args, check=True, **kw).stdout

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), **kw)

    def ids(self) -> list[str]:
        return self.out("ps", "-aq", "--no-trunc").split()

    def inspect(self, ref: str) -> dict:
        return json.loads(self.out("inspect", "--type", "container", ref))[0]

    def wait_state(self, ref: str, state: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.inspect(ref)
            if info["State"]["Status"] == state:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"{ref} is {info['State']['Status']}, not {state}")
            time.sleep(0.05)


@contextlib.contextmanager
def inside_netns(path: Path) -> Iterator[None]:
    """Run this (single-threaded) test process, and what it spawns, in the network
    namespace pinned at `path`; back to where it was afterwards."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(target, libc.CLONE_NEWNET)
        try:
            yield
        finally:
            libc.setns(here, libc.CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(here)


@pytest.fixture(scope="session")
def e2e_netns() -> Iterator[Path]:
    """The e2e session's own network namespace: the registry listens on its loopback,
    and every `hutch` a test runs (and the containers' bridges, veths and nftables rules)
    lives there, so the host's network is never touched."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Path(tempfile.mkdtemp(prefix="hutch-e2e-netns-"))
    path = d / "net"
    netns.create(str(path))
    try:
        with inside_netns(path):
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield path
    finally:
        netns.remove(str(path))
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def e2e_store(e2e_netns) -> Iterator[tuple[Path, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")
    base = Path(tempfile.mkdtemp(prefix="hutch-e2e-"))
    try:
        layout = base / "layout"
        for tag, (extra, dirs, config) in IMAGES.items():
            build_layout(layout, tag, busybox_full_layer(extra, dirs), config)
        with contextlib.ExitStack() as stack:
            with inside_netns(e2e_netns):
                reg = stack.enter_context(rf.start_registry())
                for tag in IMAGES:
                    rf.skopeo_copy(layout, tag, reg, f"e2e/busybox:{tag}")
                h = Hutch(base / "root", base / "run", reg.host)
                for tag in IMAGES:
                    h("pull", "-q", f"{reg.host}/e2e/busybox:{tag}", check=True)
            yield base, reg.host
    finally:
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp.startswith(prefix):
                out.append(mp)
    return out


def _unmount_under(path: Path) -> None:
    for mp in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def _cgroups_of(ids: list[str]) -> list[str]:
    found = []
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        for dirpath, dirs, _ in os.walk(root):
            for d in dirs:
                if any(d == i or d.startswith(i) for i in ids):
                    found.append(os.path.join(dirpath, d))
            if dirpath.count("/") > 6:
                dirs[:] = []
    return found


def _veths_of(ids: list[str], wait: float = 2.0) -> list[str]:
    """Containers of `ids` whose host veth still exists. The kernel deletes a veth pair
    asynchronously once its namespace is unpinned (~25 ms here): poll a little."""
    deadline = time.monotonic() + wait
    while True:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        left = [i for i in ids if f"veth{i[:9]}" in links]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


@pytest.fixture
def hutch(e2e_store, e2e_netns) -> Iterator[Hutch]:
    with inside_netns(e2e_netns):
        yield from _hutch(e2e_store)


def _hutch(e2e_store) -> Iterator[Hutch]:
    base, host = e2e_store
    h = Hutch(base / "root", base / "run", host)
    before = set(h.ids())
    yield h
    ids = [i for i in h.ids() if i not in before]
    if ids:
        h("rm", "-f", "-v", *ids, timeout=120)
    leftovers = [i for i in h.ids() if i in ids]
    netns_left = [i for i in ids if (base / "run" / "netns" / i).exists()]
    veths = _veths_of(ids)
    run_mounts = [m for m in _mounts_under(base / "run")
                  if any(i in m for i in ids)]
    cgroups = _cgroups_of(ids) if ids else []
    for m in run_mounts:
        subprocess.run(["umount", "-l", m], capture_output=True)
    assert not leftovers, f"rm -f left containers: {leftovers}"
    assert not netns_left, f"left network namespaces: {netns_left}"
    assert not veths, f"left veth devices: {veths}"
    assert not run_mounts, f"left mounted: {run_mounts}"
    assert not cgroups, f"left cgroups: {cgroups}"
    # With no container left, not even the engine's parent cgroup stays.
    if not h.ids():
        parents = [d for d in (os.path.join(m, cgparent.PARENT)
                               for m in cgparent.hierarchies()) if os.path.isdir(d)]
        assert not parents, f"left the engine's parent cgroups: {parents}"
