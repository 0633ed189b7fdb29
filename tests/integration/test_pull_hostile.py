"""`hutch pull` against a hostile registry: a proxy (faulty_proxy) that corrupts, cuts,
lengthens, throttles and redirects what a real registry serves, and images built by hand
to attack the unpacker (path traversal, symlink and hard-link escapes, a wrong diff_id,
a zstd decompression bomb).

Whatever goes wrong, `hutch pull` exits 1 with one line "Error: ..." (and maybe a
"hint:" line), never a traceback; and the store is left as if the pull never happened:
no image name, every stored blob still matches its digest, no blob under the bad digest,
no committed snapshot, and nothing outside the store changed. Recoverable faults (a
dropped connection, 429/503, a redirect to a blob store) end in a good pull.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import registry_fixtures as rf
from faulty_proxy import Fault, FaultyProxy
from registry_fixtures import skopeo_copy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

registry = rf.registry
basic_registry = rf.basic_registry
busybox_layout = rf.busybox_layout

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MTIME = 1700000000


# -- running hutch -------------------------------------------------------------------------

def hutch(store: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HUTCH, "--root", str(store / "root"), "--run", str(store / "run"),
                           *args], capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, stderr is "Error: ..." plus at most a hint line, no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines and lines[0].startswith("Error:"), p.stderr
    assert all(ln.startswith("hint:") for ln in lines[1:]), p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, p.stderr)
    return lines[0]


def committed_snapshots(store: Path) -> list[str]:
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.snapshot.api import Kind

    root = store / "root"
    if not (root / "snapshotter").exists():
        return []
    with ImageService(Settings(root=str(root), run=str(store / "run"))) as svc:
        return [i.name for i in svc.snapshotter.walk() if i.kind == Kind.COMMITTED]


def assert_untouched(store: Path, *bad_digests: str) -> None:
    """No image named, every blob verifies, none under a bad digest, no snapshot."""
    from hutch.content import LocalContentStore

    p = hutch(store, "images", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []
    content = store / "root" / "content"
    if content.exists():
        cs = LocalContentStore(content)
        assert cs.verify_all() == []
        for d in bad_digests:
            assert not cs.exists(d), f"blob {d} was stored"
    assert committed_snapshots(store) == []


# -- building images by hand ---------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    layout: Path
    tag: str
    manifest: bytes
    config: bytes
    layers: list[bytes]       # blobs as pushed
    diff_ids: list[str]       # as the config says

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


def tar_of(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            if isinstance(e, tuple):
                ti, data = e
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(e)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = kind, link, mode, MTIME
    return ti


def write_layout(dest: Path, layers: list[tuple[bytes, str, bytes]], *, tag: str = "1",
                 diff_ids: list[str] | None = None) -> Image:
    """An OCI layout of (blob, media type, uncompressed tar) layers. `diff_ids` overrides
    what the config claims (to build a lying image)."""
    real = [sha256(t) for _, _, t in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None else real},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": rf.OCI_MANIFEST,
        "config": {"mediaType": rf.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": mt, "digest": sha256(b), "size": len(b)}
                   for b, mt, _ in layers],
    }).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in [b for b, _, _ in layers] + [config, manifest]:
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": rf.OCI_INDEX, "manifests": [
            {"mediaType": rf.OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return Image(dest, tag, manifest, config, [b for b, _, _ in layers],
                 diff_ids if diff_ids is not None else real)


def gz_layer(tar: bytes) -> tuple[bytes, str, bytes]:
    return gzip.compress(tar, compresslevel=1, mtime=0), rf.OCI_LAYER_GZIP, tar


def push_image(reg: rf.Registry, image: Image, repo: str) -> str:
    """Push with skopeo; if skopeo refuses the image, push its blobs and manifest with
    hutch's own registry client. Returns "HOST/repo:tag"."""
    try:
        skopeo_copy(image.layout, image.tag, reg, f"{repo}:{image.tag}")
    except AssertionError:
        from hutch.oci.image import Descriptor
        from hutch.registry.client import RegistryClient

        with RegistryClient(reg.host) as c:
            for blob, mt in [(b, rf.OCI_LAYER_GZIP) for b in image.layers] + \
                    [(image.config, rf.OCI_CONFIG)]:
                c.push_blob(repo, Descriptor(mt, sha256(blob), len(blob)), blob)
            c.push_manifest(repo, image.tag, rf.OCI_MANIFEST, image.manifest)
    return f"{reg.host}/{repo}:{image.tag}"


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="module")
def busybox_pushed(registry: rf.Registry, busybox_layout: rf.BuiltImage) -> rf.BuiltImage:
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, registry, "lib/busybox:1")
    return busybox_layout


@pytest.fixture
def proxy(registry: rf.Registry) -> Iterator[FaultyProxy]:
    with FaultyProxy(registry.host) as p:
        yield p


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the store that hostile layers aim at; checked unchanged."""
    d = Path(tempfile.mkdtemp(prefix="hutch-hostile-outside-"))
    (d / "victim").write_text("original\n")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def snapshot_of(d: Path) -> dict[str, tuple[int, bytes | str]]:
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out[str(p)] = (st.st_mode, os.readlink(p) if p.is_symlink()
                       else p.read_bytes() if p.is_file() else b"")
    return out


# -- blobs that are not what they claim ----------------------------------------------------

def test_a_corrupted_layer_is_refused_and_not_stored(proxy, busybox_pushed, store):
    layer = busybox_pushed.layer_digest
    proxy.add(Fault(kind="blob", digest=layer, corrupt_at=1000, times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, layer)
    assert_untouched(store, layer)


def test_a_layer_longer_than_its_descriptor_is_refused(proxy, busybox_pushed, store):
    layer = busybox_pushed.layer_digest
    proxy.add(Fault(kind="blob", digest=layer, append=b"\0" * 4096, times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, "longer")
    assert_untouched(store, layer)


def test_a_layer_that_always_ends_early_fails_after_retries(proxy, busybox_pushed, store):
    layer = busybox_pushed.layer_digest
    proxy.add(Fault(kind="blob", digest=layer, truncate_at=50_000, honest_length=True,
                    times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, layer)
    assert_untouched(store, layer)
    gets = proxy.blob_gets(layer)
    assert 2 <= len(gets) <= 10  # retried with Range, then gave up
    assert any(g.headers.get("Range") == "bytes=50000-" for g in gets)


@pytest.mark.parametrize("fault, requests", [
    # The connection drops twice mid-body (Content-Length promised more).
    (Fault(kind="blob", truncate_at=300_000, honest_length=False, times=2), 3),
    # A body that ends early although its Content-Length said so.
    (Fault(kind="blob", truncate_at=300_000, honest_length=True, times=1), 2),
    # Content-Length larger than the blob, then a close: the client stops at the
    # descriptor's size and never waits for bytes that will not come.
    (Fault(kind="blob", declared_extra=1 << 20, times=1), 1),
], ids=["dropped-connection", "short-body", "content-length-too-large"])
def test_an_interrupted_layer_resumes_with_range_and_the_pull_succeeds(
        proxy, busybox_pushed, store, fault, requests):
    layer = busybox_pushed.layer_digest
    fault.digest = layer
    proxy.add(fault)
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert p.returncode == 0, p.stderr
    gets = proxy.blob_gets(layer)
    assert len(gets) == requests
    if fault.truncate_at:
        assert gets[-1].headers.get("Range") == f"bytes={fault.truncate_at}-"
    from hutch.content import LocalContentStore

    cs = LocalContentStore(store / "root" / "content")
    assert cs.exists(layer) and cs.verify_all() == []
    assert len(committed_snapshots(store)) == 1


def test_429_and_503_are_retried(proxy, busybox_pushed, store):
    proxy.add(Fault(kind="manifest", status=429, retry_after="0", times=2))
    proxy.add(Fault(kind="blob", digest=busybox_pushed.layer_digest, status=503, times=2))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert p.returncode == 0, p.stderr
    assert len(proxy.blob_gets(busybox_pushed.layer_digest)) == 3


def test_a_registry_that_keeps_answering_503_is_one_line(proxy, busybox_pushed, store):
    proxy.add(Fault(kind="manifest", status=503, retry_after="0", times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, "503")
    assert_untouched(store)


def test_a_blob_redirect_gets_no_authorization(basic_registry, busybox_layout, store):
    """Registries redirect blob GETs to a storage service (S3, a CDN); the registry's
    credentials must not follow (the redirect target is another origin)."""
    user, pw = basic_registry.creds()
    skopeo_copy(busybox_layout.layout, busybox_layout.tag, basic_registry, "lib/redir:1",
                creds=(user, pw))
    import base64

    basic = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    with FaultyProxy(basic_registry.host, upstream_headers={"Authorization": basic}) as side, \
            FaultyProxy(basic_registry.host) as front:
        front.add(Fault(kind="blob", redirect_to=side.port, times=None))
        name = f"{front.host}/lib/redir:1"
        p = subprocess.run([HUTCH, "--root", str(store / "root"), "--run", str(store / "run"),
                            "login", "-u", user, "--password-stdin", front.host],
                           input=pw, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        p = hutch(store, "pull", "-q", name)
        assert p.returncode == 0, p.stderr
        side_gets = side.blob_gets()
        assert {g.path.rsplit("/", 1)[1] for g in side_gets} >= {busybox_layout.layer_digest}
        assert all("Authorization" not in g.headers for g in side.requests)
        # ...while the registry itself did get them (the pull was authenticated).
        assert any("Authorization" in r.headers for r in front.requests)


# -- manifests that lie --------------------------------------------------------------------

def test_a_manifest_whose_bytes_do_not_match_the_requested_digest_is_refused(
        proxy, busybox_pushed, store):
    other = json.loads(busybox_pushed.manifest)
    other["annotations"] = {"evil": "yes"}
    body = json.dumps(other).encode()
    digest = busybox_pushed.manifest_digest
    proxy.add(Fault(kind="manifest", digest=digest, body=body, media_type=rf.OCI_MANIFEST,
                    times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox@{digest}")
    assert_one_error_line(p, digest)
    assert_untouched(store, digest, sha256(body))


def test_a_manifest_contradicting_its_digest_header_is_refused(proxy, busybox_pushed, store):
    other = json.loads(busybox_pushed.manifest)
    other["annotations"] = {"evil": "yes"}
    body = json.dumps(other).encode()
    proxy.add(Fault(kind="manifest", digest="1", body=body, media_type=rf.OCI_MANIFEST,
                    digest_header="keep", times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, busybox_pushed.manifest_digest)
    assert_untouched(store, sha256(body))


def test_an_oversized_manifest_is_refused(proxy, busybox_pushed, store):
    doc = json.loads(busybox_pushed.manifest)
    doc["annotations"] = {"pad": "x" * (5 << 20)}
    body = json.dumps(doc).encode()
    proxy.add(Fault(kind="manifest", digest="1", body=body, media_type=rf.OCI_MANIFEST,
                    times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, "limit")
    assert_untouched(store, sha256(body))


@pytest.mark.parametrize("layer_digest", [
    "sha256:../../../../etc/passwd",
    "sha256:" + "Z" * 64,
    "sha256:abc",
    "md5:" + "0" * 32,
    "sha256:" + "0" * 64 + "/../x",
    "",
], ids=["traversal", "not-hex", "short", "unknown-algorithm", "suffix", "empty"])
def test_a_manifest_with_a_malformed_digest_is_refused(proxy, busybox_pushed, store,
                                                        layer_digest):
    doc = json.loads(busybox_pushed.manifest)
    doc["layers"][0]["digest"] = layer_digest
    body = json.dumps(doc).encode()
    proxy.add(Fault(kind="manifest", digest="1", body=body, media_type=rf.OCI_MANIFEST,
                    times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p, "digest")
    assert_untouched(store)
    assert proxy.blob_gets() == []  # refused before any blob request


def test_a_manifest_with_a_negative_layer_size_is_refused(proxy, busybox_pushed, store):
    doc = json.loads(busybox_pushed.manifest)
    doc["layers"][0]["size"] = -1
    body = json.dumps(doc).encode()
    proxy.add(Fault(kind="manifest", digest="1", body=body, media_type=rf.OCI_MANIFEST,
                    times=None))
    p = hutch(store, "pull", "-q", f"{proxy.host}/lib/busybox:1")
    assert_one_error_line(p)
    assert_untouched(store)


# -- layers that attack the unpacker -------------------------------------------------------

def test_a_layer_whose_diff_id_differs_from_the_config_is_refused(registry, store, tmp_path):
    tar = tar_of([entry("etc", tarfile.DIRTYPE, mode=0o755),
                  (entry("etc/hello"), b"hello\n")])
    wrong = sha256(b"not the layer")
    image = write_layout(tmp_path / "layout", [gz_layer(tar)], diff_ids=[wrong])
    name = push_image(registry, image, "bad/diffid")
    p = hutch(store, "pull", "-q", name)
    assert_one_error_line(p, "diff_id")
    assert_untouched(store)


def _hostile(outside: Path) -> dict[str, list]:
    up = "../" * 12
    return {
        "dotdot-file": [(entry(f"{up}{str(outside).lstrip('/')}/pwned"), b"x")],
        "dotdot-in-middle": [entry("a", tarfile.DIRTYPE, mode=0o755),
                             (entry(f"a/../../{up}{str(outside).lstrip('/')}/pwned"), b"x")],
        "absolute-symlink-then-write": [
            entry("escape", tarfile.SYMTYPE, link=str(outside)),
            (entry("escape/pwned"), b"x"),
            (entry("escape/victim"), b"overwritten\n")],
        "relative-symlink-then-write": [
            entry("escape", tarfile.SYMTYPE, link=f"{up}{str(outside).lstrip('/')}"),
            (entry("escape/victim"), b"overwritten\n")],
        "hardlink-absolute": [entry("stolen", tarfile.LNKTYPE, link=str(outside / "victim"))],
        "hardlink-dotdot": [entry("stolen", tarfile.LNKTYPE,
                                  link=f"{up}{str(outside).lstrip('/')}/victim")],
        "hardlink-through-symlink": [
            entry("escape", tarfile.SYMTYPE, link=str(outside)),
            entry("stolen", tarfile.LNKTYPE, link="escape/victim")],
    }


HOSTILE = ["dotdot-file", "dotdot-in-middle", "absolute-symlink-then-write",
           "relative-symlink-then-write", "hardlink-absolute",
           "hardlink-dotdot", "hardlink-through-symlink"]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_layer_escaping_the_root_is_refused_and_nothing_outside_changes(
        registry, store, tmp_path, outside, case):
    before = snapshot_of(outside)
    tar = tar_of(_hostile(outside)[case])
    image = write_layout(tmp_path / "layout", [gz_layer(tar)])
    name = push_image(registry, image, f"hostile/{case}")
    p = hutch(store, "pull", "-q", name)
    assert snapshot_of(outside) == before
    assert_one_error_line(p)
    assert_untouched(store)


# -- a decompression bomb ------------------------------------------------------------------

def zstd_bomb(total: int) -> tuple[bytes, bytes]:
    """A zstd tar layer holding one file of `total` bytes of a repeated non-zero pattern
    (zeros would become sparse holes and cost no disk). Returns (blob, tar header) — the
    whole tar is never built in memory."""
    import zstandard

    ti = entry("bomb")
    ti.size = total
    header = ti.tobuf(tarfile.PAX_FORMAT)
    c = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
    out = [c.compress(header)]
    block = b"A" * (4 << 20)
    left = total
    while left:
        n = min(left, len(block))
        out.append(c.compress(block[:n]))
        left -= n
    out.append(c.compress(b"\0" * (1024 + (-total) % 512)))
    out.append(c.flush())
    return b"".join(out), header


def run_measured(argv: list[str], disk: Path, timeout: float = 300
                 ) -> tuple[int, str, int, int]:
    """Run argv; return (exit code, stderr, peak RSS in KiB of that process once it runs
    argv[0], peak bytes of disk used on `disk`'s filesystem; both sampled every 20 ms)."""
    import signal
    import threading

    base = shutil.disk_usage(disk).used
    peak = [0]
    rss = [0]
    done = threading.Event()

    def vm_rss(pid: int) -> int:
        # Only once the child runs hutch: between fork and exec its RSS is pytest's,
        # which is also why ru_maxrss (kept across execve) cannot be used here.
        try:
            if os.fsencode(argv[0]) not in open(f"/proc/{pid}/cmdline", "rb").read():
                return 0
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], shutil.disk_usage(disk).used - base)
            rss[0] = max(rss[0], vm_rss(proc.pid))

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, _usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), rss[0], peak[0]


def test_a_zstd_decompression_bomb_is_refused_with_bounded_memory_and_disk(
        registry, store, tmp_path):
    total = 8 << 30  # 8 GiB inflated from a few hundred KiB
    blob, _ = zstd_bomb(total)
    assert len(blob) * 2000 < total
    image = write_layout(tmp_path / "layout", [(blob, OCI_LAYER_ZSTD, b"")],
                         diff_ids=[sha256(b"unknown")])
    name = push_image(registry, image, "hostile/bomb")
    free_before = shutil.disk_usage(tmp_path).free
    code, err, maxrss_kib, peak_disk = run_measured(
        [HUTCH, "--root", str(store / "root"), "--run", str(store / "run"), "pull", "-q",
         name], tmp_path)
    p = subprocess.CompletedProcess([], code, "", err)
    assert_one_error_line(p, "bomb")
    print(f"bomb: {len(blob)} bytes, peak RSS {maxrss_kib} KiB, peak disk {peak_disk >> 20} MiB")
    assert maxrss_kib < 150 << 10, f"peak RSS {maxrss_kib} KiB"
    # The guard trips at 2000:1 of the compressed bytes read: disk is bounded by that.
    assert peak_disk < 2000 * len(blob) + (128 << 20), f"peak disk {peak_disk >> 20} MiB"
    # What the pull left on disk: the refused snapshot is gone again.
    assert free_before - shutil.disk_usage(tmp_path).free < 64 << 20
    assert_untouched(store)


def rootfs_file(store: Path, name: str, rel: str, tmp_path: Path) -> bytes | None:
    """The content of `rel` in the pulled image's rootfs (None if absent)."""
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.mount import mount_all, unmount

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        mounts = svc.snapshotter.view("hostile-check", svc.lookup(name).top_chain_id)
        target = tmp_path / "mnt"
        target.mkdir()
        mount_all(mounts, str(target))
        try:
            p = target / rel
            return p.read_bytes() if p.is_file() and not p.is_symlink() else None
        finally:
            unmount(str(target))
            svc.snapshotter.remove("hostile-check")


def test_a_symlink_chain_climbing_above_the_root_is_clamped_inside_it(
        registry, store, tmp_path, outside):
    """a -> "..", b -> a/a/a/...: resolved with RESOLVE_IN_ROOT, ".." stops at the root
    (as a chroot would), so b/<outside>/victim is the rootfs' own file, not the host's."""
    before = snapshot_of(outside)
    rel = f"{str(outside).lstrip('/')}/victim"
    tar = tar_of([entry("a", tarfile.SYMTYPE, link=".."),
                  entry("b", tarfile.SYMTYPE, link="a/a/a/a/a/a/a/a/a/a"),
                  (entry(f"b/{rel}"), b"overwritten\n")])
    image = write_layout(tmp_path / "layout", [gz_layer(tar)])
    name = push_image(registry, image, "hostile/symlink-chain")
    p = hutch(store, "pull", "-q", name)
    assert p.returncode == 0, p.stderr
    assert snapshot_of(outside) == before
    assert rootfs_file(store, name, rel, tmp_path) == b"overwritten\n"


def test_a_platform_mismatch_names_no_image(registry, busybox_pushed, store):
    p = hutch(store, "pull", "-q", "--platform", "linux/arm64", f"{registry.host}/lib/busybox:1")
    assert_one_error_line(p, "linux/arm64")
    p = hutch(store, "images", "--format", "json")
    assert json.loads(p.stdout) == []
