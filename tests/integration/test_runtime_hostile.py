"""Hostile input: bad config.json, escaping paths, NUL bytes, absurd container ids. The
runtime must exit non-zero with one clear error line (no traceback) and create nothing
outside the bundle and its --root."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_clear_error(res) -> None:
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr, res
    lines = _error_lines(res.stderr)
    assert len(lines) == 1, f"want one error line, got {len(lines)}:\n{res.stderr}"


def _snapshot(*dirs: Path) -> set[Path]:
    out: set[Path] = set()
    for d in dirs:
        if d.exists():
            out |= set(d.iterdir())
    return out


@pytest.fixture
def guard(runtime, bundle_base):
    """Fails the test if entries appear next to the bundles, in /etc or in / (the places
    an escaping path lands), or a file named like an escaping id next to --root."""
    watched = (bundle_base, Path("/etc"), Path("/"))
    before = _snapshot(*watched)
    escapes = (runtime.root.parent / "x", Path("/x"))
    there_before = {p for p in escapes if p.exists()}
    yield
    new = {
        p for p in _snapshot(*watched) - before
        # bundles and the runtimes' work dirs come and go legitimately
        if not (p.parent == bundle_base and p.name.startswith(("bundle", "work-", "hooks")))
    }
    new |= {p for p in escapes if p.exists()} - there_before
    assert not new, f"files created outside the bundle/root: {sorted(map(str, new))}"


def test_bad_json(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    runtime.bundles.append(bundle)
    bundle.config.write_text('{"ociVersion": "1.0.2", "process": {')
    res = runtime.cmd("run", "--bundle", str(bundle.path), runtime.new_id())
    assert_one_clear_error(res)
    assert runtime.list_json() == []


def test_missing_config(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    bundle.config.unlink()
    res = runtime.cmd("create", "--bundle", str(bundle.path), runtime.new_id())
    assert_one_clear_error(res)


def test_config_that_is_not_an_object(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    bundle.config.write_text("[1, 2, 3]")
    res = runtime.cmd("create", "--bundle", str(bundle.path), runtime.new_id())
    assert res.returncode != 0 and "Traceback" not in res.stderr, res


@pytest.mark.parametrize(
    "root_path", ["../../../hutch-test-no-such-root", "/hutch-test-no-such-root", ""]
)
def test_root_path_that_does_not_exist(runtime, new_bundle, guard, root_path):
    bundle = new_bundle("true")
    bundle.spec["root"]["path"] = root_path
    if root_path == "":
        bundle.spec["root"]["path"] = "nonexistent-rootfs"
    res = runtime.create(bundle)
    assert_one_clear_error(res)
    assert runtime.list_json() == []


@pytest.mark.parametrize("where", ["args", "env", "cwd"])
def test_nul_bytes_are_refused(runtime, new_bundle, guard, where):
    bundle = new_bundle("echo", "a")
    if where == "args":
        bundle.process["args"] = ["echo", "a\x00b"]
    elif where == "env":
        bundle.process["env"].append("BAD=a\x00b")
    else:
        bundle.process["cwd"] = "/tm\x00p"
    res = runtime.run(bundle)
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr
    assert "a\n" not in res.stdout


@pytest.mark.parametrize(
    "cid", ["../x", "a/b", "..", ".", "", "x" * 2000, "with space", "-leadingdash"],
    ids=["dotdot-x", "slash", "dotdot", "dot", "empty", "2000chars", "space", "dash"],
)
def test_absurd_container_ids(runtime, new_bundle, guard, cid):
    bundle = new_bundle("true")
    runtime.ids.append(cid)
    res = runtime.create(bundle, cid)
    if runtime.name == "runc" and cid in ("with space", "-leadingdash"):
        # runc's id regexp is ^[\w+-\.]+$: spaces are refused; "-x" is read as a flag
        assert res.returncode != 0
        return
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr, res
    assert not (runtime.root / "a").exists()  # (an escape next to --root: the guard)
    assert runtime.list_json() == []


def test_mount_destination_with_dotdot_stays_in_the_rootfs(observe, guard):
    name = f"hutchevil-{secrets.token_hex(3)}"

    def prepare(b):
        b.spec["root"]["readonly"] = False
        b.add_mount(f"../../etc/{name}", "tmpfs", "tmpfs", ["size=1m"])

    obs = observe("true", prepare=prepare)
    for bundle in (obs.bundle, obs.ref_bundle):
        assert not Path(f"/etc/{name}").exists()
        assert not (bundle.path.parent / "etc" / name).exists()
        assert not (bundle.path / "etc" / name).exists()
    # runc 1.1 accepts a relative destination (deprecated) and resolves it in the rootfs;
    # refusing it is also correct.
    if obs.mine.ok:
        assert (obs.bundle.rootfs / "etc" / name).is_dir()
    else:
        assert "Traceback" not in obs.mine.stderr


def test_mount_through_a_symlink_does_not_escape_the_rootfs(observe, bundle_base, guard):
    target = bundle_base / f"escape-{secrets.token_hex(3)}"

    def prepare(b):
        b.spec["root"]["readonly"] = False
        # an absolute symlink inside the rootfs pointing at a host path
        (b.rootfs / "evil").symlink_to(target)
        b.add_mount("/evil/sub", "tmpfs", "tmpfs", ["size=1m"])

    obs = observe("true", prepare=prepare)
    assert not target.exists(), "a mount followed a rootfs symlink onto the host"
    assert "Traceback" not in obs.mine.stderr


def test_bad_namespace_path(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    bundle.set_namespace("network", "/proc/self/ns/hutch-no-such")
    res = runtime.create(bundle)
    assert_one_clear_error(res)


def test_unknown_namespace_type(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    bundle.spec["linux"]["namespaces"].append({"type": "hutchspace"})
    res = runtime.create(bundle)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res


def test_wrong_types_in_the_spec(runtime, new_bundle, guard):
    bundle = new_bundle("true")
    bundle.process["user"] = {"uid": "root", "gid": 0}
    bundle.config.write_text(json.dumps(bundle.spec))
    res = runtime.cmd("create", "--bundle", str(bundle.path), runtime.new_id())
    assert_one_clear_error(res)


def test_empty_args(runtime, new_bundle, guard):
    bundle = new_bundle()
    bundle.process["args"] = []
    res = runtime.create(bundle)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res


def test_bundle_that_does_not_exist(runtime, guard, bundle_base):
    res = runtime.cmd("create", "--bundle", str(bundle_base / "nope"), runtime.new_id())
    assert_one_clear_error(res)
