"""A Debian bookworm minbase image as a multi-layer OCI layout, built once and cached.

    from debootstrap_image import debootstrap_layout
    image = debootstrap_layout()          # DebootstrapImage(layout, tag, layers, ...)
    skopeo_copy(image.layout, image.tag, reg, "debian/minbase:bookworm")

`debootstrap --variant=minbase bookworm` runs against the machine's configured Debian
mirror (the first deb.debian.org-style URI of /etc/apt/sources.list*, the only network
these machines reach). The tree (apt caches and lists removed) is cut into layers by top
directory, the way a Dockerfile's steps would grow it:

    usr/lib  |  usr/share  |  the rest of usr  |  var  |  everything else (etc, bin...)

Each layer is a deterministic tar from hutch.archive.diff.write_tar, gzip-compressed by
hutch.archive.compress.LayerWriter. The rootfs and the layout live under
/var/tmp/hutch-test-cache/debootstrap-<YYYYMMDD>/ (a new one a day; older ones are
removed), guarded by a lock so parallel sessions build it once. When debootstrap cannot
run (no mirror, not root), the builder falls back to a tree made of the host's own files
(/usr/lib/python3.11 and friends) and says so in `source`.

Run as a script to build (or show) the cache: `python tests/integration/debootstrap_image.py`.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path("/var/tmp/hutch-test-cache")
SUITE = "bookworm"
TAG = "bookworm"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# (layer name, paths it holds; None = what no other layer took)
SPLIT = [("usr-lib", ["usr/lib"]), ("usr-share", ["usr/share"]), ("usr", ["usr"]),
         ("var", ["var"]), ("base", None)]


@dataclass
class DebootstrapImage:
    layout: Path
    tag: str
    rootfs: Path
    source: str              # "debootstrap <mirror>" or "host files (fallback: why)"
    layers: list[dict]       # {"name", "digest", "size", "diff_id"}
    manifest_digest: str

    @property
    def total_size(self) -> int:
        return sum(layer["size"] for layer in self.layers)


def apt_mirror() -> str | None:
    """The Debian mirror apt uses here (deb822 .sources or one-line .list files)."""
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        if not f.is_file() or not f.name.endswith((".list", ".sources")):
            continue
        text = f.read_text(errors="replace")
        for m in re.finditer(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s*)?)(\S+)", text, re.M):
            uri = m.group(1)
            if "debian" in uri and "security" not in uri and uri.startswith("http"):
                return uri
    return None


def _debootstrap(rootfs: Path) -> str:
    mirror = apt_mirror()
    if mirror is None:
        raise RuntimeError("no Debian mirror in /etc/apt/sources.list*")
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap needs root and the debootstrap package")
    r = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {r.stderr.strip()[-500:]}")
    # What a Debian image does not ship: downloaded debs and package lists.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "var/cache/debconf"):
        p = rootfs / junk
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for d in ("proc", "sys", "dev"):  # debootstrap may leave things mounted on failure
        subprocess.run(["umount", "-l", str(rootfs / d)], capture_output=True)
    return f"debootstrap --variant=minbase {SUITE} {mirror}"


def _host_files(rootfs: Path, why: str) -> str:
    """Fallback: a tree of the host's own files, big enough to make layers matter."""
    for src in ("/usr/lib/python3.11", "/usr/share/zoneinfo", "/usr/bin", "/etc"):
        dst = rootfs / src.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", src, str(dst)], check=False, capture_output=True)
    (rootfs / "var" / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", rootfs / "usr" / "bin" / "busybox")
    return f"host files (fallback: {why})"


def _write_layers(rootfs: Path, blobs: Path) -> list[dict]:
    from hutch.archive.compress import LayerWriter
    from hutch.archive.diff import write_tar

    top = sorted(p.name for p in rootfs.iterdir())
    layers = []
    taken: list[str] = []
    for name, paths in SPLIT:
        tmp = blobs / f".{name}.tmp"
        with open(tmp, "wb") as f:
            w = LayerWriter(f, "gzip", level=6)
            if paths is None:
                # Everything but the trees earlier layers took.
                write_tar(rootfs, w, exclude=sorted(taken))
            else:
                # Only `paths` (with their parent directories) minus earlier layers'.
                drop = [t for t in top if not any(p.split("/")[0] == t for p in paths)]
                drop += _siblings_outside(rootfs, paths)
                drop += [t for t in taken if any(t.startswith(p + "/") for p in paths)]
                write_tar(rootfs, w, exclude=drop)
            c = w.close()
        os.rename(tmp, blobs / c.digest.split(":", 1)[1])
        layers.append({"name": name, "digest": c.digest, "size": c.size,
                       "diff_id": c.diff_id})
        if paths:
            taken += paths
    return layers


def _siblings_outside(rootfs: Path, paths: list[str]) -> list[str]:
    """For "usr/lib": every other entry of usr/ (so the layer holds usr/ and usr/lib)."""
    out = []
    for p in paths:
        parts = p.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            keep = "/".join(parts[:depth + 1])
            base = rootfs / parent
            if base.is_dir():
                out += [f"{parent}/{c.name}" for c in base.iterdir()
                        if f"{parent}/{c.name}" != keep]
    return out


def _write_layout(rootfs: Path, layout: Path, source: str) -> DebootstrapImage:
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers = _write_layers(rootfs, blobs)
    config = json.dumps({
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": [x["diff_id"] for x in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"{source}: {x['name']}"}
                    for x in layers],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": x["digest"], "size": x["size"]}
                   for x in layers],
    }).encode()
    for data in (config, manifest):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": _sha256(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": TAG}}]}))
    image = DebootstrapImage(layout, TAG, rootfs, source, layers, _sha256(manifest))
    (layout.parent / "image.json").write_text(json.dumps({
        "source": source, "layers": layers, "manifest_digest": image.manifest_digest}))
    return image


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def debootstrap_layout(cache: Path = CACHE, *, log=None) -> DebootstrapImage:
    """The cached image of today, built (debootstrap ~30 s, layers ~15 s) if missing."""
    say = log or (lambda msg: None)
    cache.mkdir(parents=True, exist_ok=True)
    day = datetime.date.today().strftime("%Y%m%d")
    here = cache / f"debootstrap-{day}"
    with open(cache / "debootstrap.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = here / "image.json"
        if info.is_file():
            doc = json.loads(info.read_text())
            return DebootstrapImage(here / "layout", TAG, here / "rootfs", doc["source"],
                                    doc["layers"], doc["manifest_digest"])
        for old in cache.glob("debootstrap-*"):
            if old.is_dir() and old != here:
                shutil.rmtree(old, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".debootstrap-{day}-", dir=cache))
        try:
            rootfs = work / "rootfs"
            say("debootstrap --variant=minbase (about 30 s)...")
            try:
                source = _debootstrap(rootfs)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                shutil.rmtree(rootfs, ignore_errors=True)
                rootfs.mkdir()
                source = _host_files(rootfs, str(e))
                say(f"falling back: {source}")
            say("writing layers...")
            _write_layout(rootfs, work / "layout", source)
            shutil.rmtree(here, ignore_errors=True)
            os.rename(work, here)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        doc = json.loads(info.read_text())
        return DebootstrapImage(here / "layout", TAG, here / "rootfs", doc["source"],
                                doc["layers"], doc["manifest_digest"])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    img = debootstrap_layout(log=lambda m: print(m, file=sys.stderr))
    print(f"{img.layout}:{img.tag}  ({img.source})")
    for layer in img.layers:
        print(f"  {layer['name']:<10} {layer['size'] / 1e6:7.1f} MB  {layer['digest'][:19]}")
    print(f"  total      {img.total_size / 1e6:7.1f} MB")
