"""`hutch pull` killed (SIGKILL) at random moments, over and over, into the same store;
and two pulls of one image at once.

A slowed-down proxy (faulty_proxy, a rate limit on blob bodies) stretches a pull of a
few MiB over a couple of seconds, so kills land mid-download, mid-unpack and mid-record.
After every kill the content store verifies (every blob matches its name) and a listed
image has all its blobs; the next pull completes, resuming partial downloads with Range,
and the image's rootfs has /bin/busybox. Concurrent pulls download each layer once.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import registry_fixtures as rf
from faulty_proxy import Fault, FaultyProxy
from test_pull_hostile import Image, entry, gz_layer, tar_of, write_layout

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

registry = rf.registry

HUTCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hutch")
KILL_BUDGET = 25.0      # seconds of kill-and-restart
RATE = 3 << 20          # bytes/s per blob response through the proxy


def hutch_argv(store: Path, *args: str) -> list[str]:
    return [HUTCH, "--root", str(store / "root"), "--run", str(store / "run"), *args]


def random_layer(name: str, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)  # incompressible: gzip keeps it ~size
    return tar_of([entry("opt", tarfile.DIRTYPE, mode=0o755), (entry(f"opt/{name}"), data)])


@pytest.fixture(scope="module")
def big_image(registry: rf.Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """busybox plus two 3 MiB layers of random bytes (about 7 MB to download)."""
    layers = [gz_layer(rf.busybox_layer()),
              gz_layer(random_layer("one", 3 << 20, 1)),
              gz_layer(random_layer("two", 3 << 20, 2))]
    image: Image = write_layout(tmp_path_factory.mktemp("crash") / "layout", layers)
    rf.skopeo_copy(image.layout, image.tag, registry, f"crash/big:{image.tag}")
    return image


@pytest.fixture(scope="module")
def many_files_image(registry: rf.Registry, tmp_path_factory: pytest.TempPathFactory
                     ) -> Image:
    """busybox plus three layers of 400 small files each: slow to unpack, quick to fetch."""
    def layer(n: int) -> bytes:
        entries: list = [entry(f"d{n}", tarfile.DIRTYPE, mode=0o755)]
        entries += [(entry(f"d{n}/f{i}"), b"%d\n" % i * 100) for i in range(400)]
        return tar_of(entries)

    layers = [gz_layer(rf.busybox_layer())] + [gz_layer(layer(n)) for n in range(3)]
    image: Image = write_layout(tmp_path_factory.mktemp("many") / "layout", layers)
    rf.skopeo_copy(image.layout, image.tag, registry, f"crash/many:{image.tag}")
    return image


@pytest.fixture
def slow_proxy(registry: rf.Registry) -> Iterator[FaultyProxy]:
    with FaultyProxy(registry.host) as p:
        p.add(Fault(kind="blob", rate=RATE, times=None))
        yield p


def own_mounts(under: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    return [t for t in targets if t.startswith(str(under) + "/")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # A killed unpack may have left its overlay mounted under root/tmp: unmount, deepest
    # first, and fail the test if it did (the next pull must not need that either).
    for t in sorted(own_mounts(tmp_path), key=len, reverse=True):
        subprocess.run(["umount", "-l", t], check=False)


def check_store(store: Path) -> dict:
    """The invariants a kill must keep; returns what `hutch images` lists."""
    from hutch.content import LocalContentStore

    root = store / "root"
    if (root / "content").exists():
        assert LocalContentStore(root / "content").verify_all() == []
    if not (root / "metadata.db").exists():
        return {}
    p = subprocess.run(hutch_argv(store, "images", "--format", "json"), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    listed = {row["Name"]: row for row in json.loads(p.stdout)}
    if listed:
        from hutch.config import Settings
        from hutch.image.pull import missing
        from hutch.image.service import ImageService

        with ImageService(Settings(root=str(root), run=str(store / "run"))) as svc:
            for name in listed:
                assert missing(svc, svc.lookup(name)) == [], f"{name} lacks blobs"
    return listed


def stale_state(store: Path) -> list[str]:
    """What killed pulls left that a completed pull did not clean: active snapshots,
    ingests, mounts."""
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.snapshot.api import Kind

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        out = [f"snapshot {i.kind.value} {i.name}" for i in svc.snapshotter.walk()
               if i.kind != Kind.COMMITTED]
        out += [f"ingest {i.ref} {i.offset} bytes" for i in svc.content.ingests()]
    return out + [f"mount {m}" for m in own_mounts(store)]


def has_busybox(store: Path, name: str, tmp_path: Path) -> bool:
    from hutch.config import Settings
    from hutch.image.service import ImageService
    from hutch.mount import mount_all, unmount

    with ImageService(Settings(root=str(store / "root"), run=str(store / "run"))) as svc:
        img = svc.lookup(name)
        mounts = svc.snapshotter.view("crash-check", img.top_chain_id)
        target = tmp_path / "mnt"
        target.mkdir(exist_ok=True)
        mount_all(mounts, str(target))
        try:
            return ((target / "bin" / "busybox").is_file()
                    and (target / "opt" / "one").stat().st_size == 3 << 20
                    and (target / "opt" / "two").stat().st_size == 3 << 20)
        finally:
            unmount(str(target))
            svc.snapshotter.remove("crash-check")


def test_pull_killed_at_random_moments_leaves_a_consistent_store_and_then_succeeds(
        slow_proxy, big_image, store, tmp_path):
    name = f"{slow_proxy.host}/crash/big:{big_image.tag}"
    rng = random.Random(int(os.environ.get("HUTCH_CRASH_SEED", "0")) or None)
    kills = completed = 0
    leftovers: list[str] = []
    deadline = time.monotonic() + KILL_BUDGET
    while time.monotonic() < deadline:
        proc = subprocess.Popen(hutch_argv(store, "pull", "-q", name),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(rng.uniform(0.05, 1.6))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
        else:
            err = proc.stderr.read().decode()
            assert proc.returncode == 0, err
            completed += 1
        finally:
            proc.stderr.close()
        listed = check_store(store)
        if name in listed:
            # It got through: check it, then start over in a fresh store so the kills
            # keep landing in the download and unpack.
            assert has_busybox(store, name, tmp_path)
            leftovers += stale_state(store)
            for t in sorted(own_mounts(store), key=len, reverse=True):
                subprocess.run(["umount", "-l", t], check=False)
            subprocess.run(["rm", "-rf", str(store / "root"), str(store / "run")],
                           check=True)
    print(f"\n{kills} kills, {completed} pulls completed on their own, "
          f"{len(slow_proxy.blob_gets())} blob GETs, "
          f"{sum('Range' in g.headers for g in slow_proxy.blob_gets())} with Range")
    assert kills >= 8
    # Some kill landed mid-layer, and the next pull resumed from the bytes it had.
    assert any("Range" in g.headers for g in slow_proxy.blob_gets())
    p = subprocess.run(hutch_argv(store, "pull", "-q", name), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert name in check_store(store)
    assert has_busybox(store, name, tmp_path)

    leftovers += stale_state(store)
    print("left behind by killed pulls after a good pull:", leftovers)  # see below


def test_two_concurrent_pulls_both_succeed_and_download_each_layer_once(
        slow_proxy, big_image, registry, store, tmp_path):
    # The store exists already (an unrelated image pulled first): see the next test for
    # pulls racing to create it.
    warm = write_layout(tmp_path / "warm", [gz_layer(tar_of([(entry("hello"), b"hi\n")]))])
    rf.skopeo_copy(warm.layout, warm.tag, registry, "crash/warm:1")
    p = subprocess.run(hutch_argv(store, "pull", "-q", f"{registry.host}/crash/warm:1"),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    name = f"{slow_proxy.host}/crash/big:{big_image.tag}"
    procs = [subprocess.Popen(hutch_argv(store, "pull", "-q", name), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == name
    for layer in json.loads(big_image.manifest)["layers"]:
        gets = slow_proxy.blob_gets(layer["digest"])
        assert len(gets) == 1, (layer["digest"], len(gets))
    assert name in check_store(store)
    assert has_busybox(store, name, tmp_path)


def _open_snapshot_db(path: str, barrier) -> str | None:
    from hutch.snapshot.metadata import MetaStore

    barrier.wait()
    try:
        MetaStore(path)
    except Exception as e:  # noqa: BLE001 - reported to the parent
        return f"{type(e).__name__}: {e}"
    return None


def test_pulls_starting_together_in_a_new_store_all_open_it(tmp_path):
    """Each `hutch pull` opens the store's snapshotter, whose database MetaStore is; here
    six processes open a new one at once, released together by a barrier (with real pulls
    the window is narrow: it showed once in a few dozen concurrent pulls)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(20):
        root = str(tmp_path / f"s{round_}.db")
        with ctx.Manager() as mgr:
            barrier = mgr.Barrier(6)
            with ctx.Pool(6) as pool:
                failures += [r for r in pool.starmap(_open_snapshot_db, [(root, barrier)] * 6) if r]
    assert failures == []


def test_a_pull_killed_while_unpacking_leaves_nothing_once_the_next_pull_completes(
        registry, many_files_image, tmp_path):
    """The blobs are in the store already, so the pull goes straight to unpacking and
    the kill lands there."""
    name = f"{registry.host}/crash/many:{many_files_image.tag}"
    seed = tmp_path / "seed"
    p = subprocess.run(hutch_argv(seed, "pull", "-q", name), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    rng = random.Random(7)
    left: list[str] = []

    def fresh(i: int) -> Path:
        store = tmp_path / f"s{i}"
        (store / "root").mkdir(parents=True)
        subprocess.run(["cp", "-a", str(seed / "root" / "content"), str(store / "root")],
                       check=True)
        return store

    # How long a pull takes when it only has to unpack: the kills land inside that.
    t0 = time.monotonic()
    p = subprocess.run(hutch_argv(fresh(99), "pull", "-q", name), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    took = time.monotonic() - t0
    try:
        for i in range(5):
            store = fresh(i)
            proc = subprocess.Popen(hutch_argv(store, "pull", "-q", name),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.4, 0.95) * took)
            proc.kill()
            proc.wait()
            p = subprocess.run(hutch_argv(store, "pull", "-q", name), capture_output=True,
                               text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            left += stale_state(store)
    finally:
        for t in sorted(own_mounts(tmp_path), key=len, reverse=True):
            subprocess.run(["umount", "-l", t], check=False)
    assert left == []
