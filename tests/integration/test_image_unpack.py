"""Unpacking layers into snapshot chains: the merged view is what the layers say, shared
bases are unpacked once, a wrong diff_id leaves nothing committed."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from hutch.archive.compress import compress_layer
from hutch.errors import InvalidArgument, NotFound
from hutch.image.unpack import LayerToUnpack, chain_ids, unpack
from hutch.mount import mount_all, unmount
from hutch.snapshot import snapshotter_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _tar(entries: dict[str, bytes | None]) -> bytes:
    """name -> content (None: directory). Names starting with .wh. are whiteouts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layer(entries: dict[str, bytes | None]) -> tuple[LayerToUnpack, str]:
    raw = _tar(entries)
    out = io.BytesIO()
    c = compress_layer(io.BytesIO(raw), out, "gzip")
    blob = out.getvalue()
    return LayerToUnpack(lambda: io.BytesIO(blob), c.diff_id, c.digest), c.diff_id


@pytest.fixture(params=["overlay", "native"])
def snap(request, tmp_path):
    s = snapshotter_for(request.param, str(tmp_path / request.param))
    yield s
    s.close()


def _view(snap, top: str, tmp_path) -> dict[str, str]:
    mounts = snap.prepare("look", top)
    target = tmp_path / "mnt"
    target.mkdir(exist_ok=True)
    mount_all(mounts, str(target))
    try:
        out = {}
        for dirpath, _dirs, files in os.walk(target):
            for f in files:
                p = os.path.join(dirpath, f)
                out[os.path.relpath(p, target)] = open(p, "rb").read().decode()
        return out
    finally:
        unmount(str(target))
        snap.remove("look")


def test_two_layers_with_a_whiteout_and_an_opaque_dir(snap, tmp_path):
    l1, d1 = _layer({"etc": None, "etc/a": b"a1", "etc/b": b"b1", "opt": None,
                     "opt/x": b"x1"})
    l2, d2 = _layer({"etc": None, "etc/.wh.b": b"", "etc/c": b"c2", "opt": None,
                     "opt/.wh..wh..opq": b"", "opt/y": b"y2"})
    top, _ = unpack(snap, [l1, l2], work_dir=str(tmp_path / "work"))
    assert top == chain_ids([d1, d2])[-1]
    assert _view(snap, top, tmp_path) == {"etc/a": "a1", "etc/c": "c2", "opt/y": "y2"}


def test_a_shared_base_is_unpacked_once(snap, tmp_path):
    base, _ = _layer({"f": b"base"})
    top_a, _ = _layer({"a": b"A"})
    top_b, _ = _layer({"b": b"B"})
    opened = []

    def counting(layer):
        orig = layer.open_blob

        def _open():
            opened.append(layer.diff_id)
            return orig()
        layer.open_blob = _open
        return layer

    unpack(snap, [counting(base), top_a], work_dir=str(tmp_path / "w"))
    unpack(snap, [counting(base), top_b], work_dir=str(tmp_path / "w"))
    assert opened.count(base.diff_id) == 1


def test_a_wrong_diff_id_commits_nothing(snap, tmp_path):
    layer, _ = _layer({"f": b"x"})
    layer.diff_id = "sha256:" + "0" * 64
    with pytest.raises(InvalidArgument):
        unpack(snap, [layer], work_dir=str(tmp_path / "w"))
    with pytest.raises(NotFound):
        snap.stat(layer.diff_id)
    assert [i.name for i in snap.walk()] == []


def test_chain_ids_follow_the_image_spec():
    d = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    import hashlib

    assert chain_ids(d[:1]) == d[:1]
    assert chain_ids(d)[1] == "sha256:" + hashlib.sha256(f"{d[0]} {d[1]}".encode()).hexdigest()
