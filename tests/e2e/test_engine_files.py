"""The container's files through the installed CLI: -v/--mount, volumes, commit, diff, cp."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

pytestmark = pytest.mark.e2e


def run_ok(hutch, *args: str) -> str:
    p = hutch("run", "--rm", *args)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p.stdout


# -- -v, --mount, volumes ---------------------------------------------------------------------

def test_bind_mount_is_seen_and_ro_is_enforced(hutch, tmp_path):
    (tmp_path / "in.txt").write_text("from the host\n")
    out = run_ok(hutch, "-v", f"{tmp_path}:/h:ro", hutch.image, "sh", "-c",
                 "cat /h/in.txt; touch /h/new 2>&1; grep ' /h ' /proc/self/mounts")
    assert out.startswith("from the host\n")
    assert "Read-only file system" in out
    assert " ro," in out.splitlines()[-1]
    assert not (tmp_path / "new").exists()
    run_ok(hutch, "-v", f"{tmp_path}:/h", hutch.image, "sh", "-c", "echo back > /h/out.txt")
    assert (tmp_path / "out.txt").read_text() == "back\n"


def test_mount_flag_bind_needs_an_existing_source(hutch, tmp_path):
    p = hutch("run", "--rm", "--mount", f"type=bind,source={tmp_path}/nope,target=/x",
              hutch.image, "true")
    assert p.returncode == 125
    assert "does not exist" in p.stderr and p.stderr.count("\n") == 1


def test_named_volume_outlives_its_containers_and_is_seeded_from_the_image(hutch):
    name = "e2e-files-vol"
    try:
        # First use of an empty volume over an image directory copies the image's files.
        out = run_ok(hutch, "-v", f"{name}:/data", hutch.config_image, "cat /data/seed.txt")
        assert out == "seeded by the image\n"
        run_ok(hutch, "-v", f"{name}:/v", hutch.image, "sh", "-c", "echo kept > /v/k")
        assert run_ok(hutch, "--mount", f"source={name},target=/w", hutch.image,
                      "cat", "/w/k") == "kept\n"
        assert name in hutch.out("volume", "ls", "-q").split()
        info = json.loads(hutch.out("volume", "inspect", name))[0]
        assert info["Name"] == name and os.path.isfile(os.path.join(info["Mountpoint"], "k"))
    finally:
        hutch("volume", "rm", "-f", name)


def test_volume_in_use_cannot_be_removed(hutch):
    name = "e2e-files-busy"
    cid = hutch.out("run", "-d", "-v", f"{name}:/v", hutch.image, "sleep", "60").strip()
    try:
        p = hutch("volume", "rm", name)
        assert p.returncode == 1 and "in use" in p.stderr
    finally:
        hutch("rm", "-f", cid)
        hutch("volume", "rm", "-f", name)


def test_image_volume_is_anonymous_and_rm_v_removes_it(hutch):
    cid = hutch.out("run", "-d", hutch.config_image, "sleep 60").strip()
    mounts = hutch.inspect(cid)["Mounts"]
    (vol,) = [m for m in mounts if m["Destination"] == "/data"]
    assert vol["Type"] == "volume" and len(vol["Name"]) == 64
    assert hutch.out("exec", cid, "cat", "/data/seed.txt") == "seeded by the image\n"
    hutch.out("rm", "-f", "-v", cid)
    assert vol["Name"] not in hutch.out("volume", "ls", "-q").split()


def test_tmpfs_mount_and_flag(hutch):
    out = run_ok(hutch, "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--tmpfs",
                 "/u:size=2m", hutch.image, "sh", "-c", "grep -E ' /(t|u) ' /proc/self/mounts")
    lines = sorted(out.splitlines())
    assert lines[0].split()[1:3] == ["/t", "tmpfs"] and "size=1024k" in lines[0]
    assert lines[1].split()[1:3] == ["/u", "tmpfs"] and "size=2048k" in lines[1]


# -- diff, commit --------------------------------------------------------------------------------

def test_diff_lists_added_changed_and_deleted(hutch):
    cid = hutch.out("run", "-d", hutch.image, "sh", "-c",
                    "echo new > /etc/added; rm /bin/ls; mkdir -p /var/made; sleep 60").strip()
    try:
        hutch.wait_state(cid, "running")
        for _ in range(50):
            lines = hutch.out("diff", cid).splitlines()
            if "A /var/made" in lines:
                break
        assert "A /etc/added" in lines and "C /etc" in lines
        assert "D /bin/ls" in lines and "C /bin" in lines
        assert "A /var/made" in lines
        # What the runtime mounts (/etc/hosts, /proc, ...) is not the container's change.
        assert not any(line.endswith(("/etc/hosts", "/etc/hostname", "/proc")) for line in lines)
    finally:
        hutch("rm", "-f", cid)


def test_commit_makes_an_image_that_runs_with_the_change(hutch):
    ref = "e2e/committed:one"
    cid = hutch.out("run", "-d", "-e", "KEPT=from-run", hutch.image, "sh", "-c",
                    "echo committed > /etc/motd; rm /bin/ls; sleep 60").strip()
    try:
        hutch.wait_state(cid, "running")
        for _ in range(50):
            if "A /etc/motd" in hutch.out("diff", cid):
                break
        image_id = hutch.out("commit", "-m", "e2e commit", "-a", "tester",
                             "-c", 'CMD ["cat", "/etc/motd"]', "-c", "ENV ADDED=by-change",
                             cid, ref).strip()
        assert image_id.startswith("sha256:")
        # The committed container still runs (paused only during the commit).
        assert hutch.inspect(cid)["State"]["Status"] == "running"
        assert run_ok(hutch, ref) == "committed\n"
        env = run_ok(hutch, ref, "env").splitlines()
        assert "KEPT=from-run" in env and "ADDED=by-change" in env
        p = hutch("run", "--rm", ref, "ls", "/")  # the deletion is in the image too
        assert p.returncode == 127
        assert run_ok(hutch, ref, "sh", "-c", "test -e /bin/ls && echo there || echo gone") \
            == "gone\n"
        info = json.loads(hutch.out("image", "inspect", ref))[0]
        assert info["Config"]["Cmd"] == ["cat", "/etc/motd"]
        assert len(info["RootFS"]["Layers"]) == 2
    finally:
        hutch("rm", "-f", cid)
        hutch("rmi", ref)


# -- cp --------------------------------------------------------------------------------------

def test_cp_into_and_out_of_a_running_container(hutch, tmp_path):
    cid = hutch.out("run", "-d", hutch.image, "sleep", "60").strip()
    try:
        src = tmp_path / "host.txt"
        src.write_text("to the container\n")
        hutch.out("cp", str(src), f"{cid}:/tmp/")
        assert hutch.out("exec", cid, "cat", "/tmp/host.txt") == "to the container\n"
        hutch.out("exec", cid, "sh", "-c", "mkdir -p /out/sub; echo a > /out/sub/a")
        hutch.out("cp", f"{cid}:/out", str(tmp_path / "copied"))
        assert (tmp_path / "copied" / "sub" / "a").read_text() == "a\n"
        # "-" streams a tar.
        raw = subprocess.run(hutch.argv("cp", f"{cid}:/out/sub/a", "-"),
                             capture_output=True, timeout=60).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            assert tar.getnames() == ["a"]
    finally:
        hutch("rm", "-f", cid)


def test_cp_does_not_follow_container_symlinks_out_to_the_host(hutch, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("host secret\n")
    cid = hutch.out("run", "-d", hutch.image, "sh", "-c",
                    f"ln -s {victim} /escape; ln -s ../../../../../{tmp_path} /up; "
                    "sleep 60").strip()
    try:
        hutch.wait_state(cid, "running")
        for _ in range(50):
            if "A /up" in hutch.out("diff", cid):
                break
        # Reading through the links resolves inside the container: nothing of the host's.
        p = hutch("cp", f"{cid}:/escape", str(tmp_path / "got"))
        got = tmp_path / "got"
        assert not got.exists() or got.is_symlink()
        # Writing through them lands in the container, never on the host.
        src = tmp_path / "payload"
        src.write_text("overwritten\n")
        p = hutch("cp", str(src), f"{cid}:/up/victim.txt")
        assert victim.read_text() == "host secret\n", p.stderr
    finally:
        hutch("rm", "-f", cid)


def test_cp_from_a_missing_path_is_one_clear_error(hutch):
    cid = hutch.out("create", hutch.image, "true").strip()
    try:
        p = hutch("cp", f"{cid}:/no/such", "/tmp/hutch-e2e-nothing")
        assert p.returncode == 1
        assert "Could not find the file /no/such" in p.stderr
        assert p.stderr.count("\n") == 1
    finally:
        hutch("rm", "-f", cid)
