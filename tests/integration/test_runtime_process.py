"""The container process: user, groups, env, cwd, rlimits, umask, oom_score_adj."""

from __future__ import annotations

import resource

import pytest
from bundles import parse_limits

pytestmark = pytest.mark.integration


def test_root_user_by_default(observe):
    obs = observe("id")
    assert obs.ref.stdout.startswith("uid=0(root) gid=0(root)")
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_user_uid_gid_and_additional_gids(observe):
    def prepare(b):
        b.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1001, 2000]}

    obs = observe("sh", "-c", "id; grep -E '^(Uid|Gid|Groups)' /proc/self/status", prepare=prepare)
    assert obs.ref.stdout.splitlines()[0] == (
        "uid=1000(user) gid=1000(user) groups=1001(extra),2000"
    ), obs.ref
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout == obs.ref.stdout


def test_user_without_passwd_entry(observe):
    obs = observe("sh", "-c", "id; echo HOME=$HOME",
                  prepare=lambda b: b.process.update(user={"uid": 4242, "gid": 4343}))
    assert obs.ref.stdout.startswith("uid=4242 gid=4343")
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_env_is_exactly_the_specs_plus_home(observe):
    def prepare(b):
        b.process["env"] = ["PATH=/bin", "FOO=bar baz", "EMPTY=", "TERM=dumb"]

    obs = observe("env", prepare=prepare)
    assert "FOO=bar baz" in obs.ref.stdout.splitlines()
    assert obs.mine.ok, obs.mine
    assert sorted(obs.mine.stdout.splitlines()) == sorted(obs.ref.stdout.splitlines())


def test_home_comes_from_passwd_for_the_user(observe):
    obs = observe("sh", "-c", "echo $HOME",
                  prepare=lambda b: b.process.update(user={"uid": 1000, "gid": 1000}))
    assert obs.ref.stdout == "/home/user\n"
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


@pytest.mark.parametrize("cwd", ["/tmp", "/home/user", "/does/not/exist/yet"])
def test_cwd(observe, cwd):
    def prepare(b):
        b.process["cwd"] = cwd
        b.spec["root"]["readonly"] = False  # a missing cwd is created in the rootfs

    obs = observe("pwd", prepare=prepare)
    assert obs.ref.stdout == cwd + "\n", obs.ref
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_rlimits(observe):
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(4096, nofile_hard)  # no CAP_SYS_RESOURCE: stay within the hard limit

    def prepare(b):
        b.process["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": nofile},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 8 << 20},
        ]

    obs = observe("sh", "-c", "cat /proc/self/limits; echo ---; ulimit -n; ulimit -Hn",
                  prepare=prepare)
    limits_text, _, ulimit = obs.ref.stdout.partition("---\n")
    ref = parse_limits(limits_text)
    assert ref["Max open files"] == ("512", str(nofile))
    assert ref["Max processes"] == ("300", "400")
    assert ulimit.split() == ["512", str(nofile)]
    assert obs.mine.ok, obs.mine
    mine_text, _, mine_ulimit = obs.mine.stdout.partition("---\n")
    assert parse_limits(mine_text) == ref
    assert mine_ulimit == ulimit


def test_rlimit_above_the_hard_limit_fails_to_start(observe):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite nofile hard limit here")

    def prepare(b):
        b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]

    obs = observe("true", prepare=prepare)
    if obs.ref.ok:
        pytest.skip("this host allows raising rlimits (CAP_SYS_RESOURCE)")
    assert not obs.mine.ok, obs.mine


@pytest.mark.parametrize("umask", [None, 0o027, 0o077])
def test_umask(observe, umask):
    def prepare(b):
        if umask is not None:
            b.process["user"]["umask"] = umask

    obs = observe("sh", "-c", "umask", prepare=prepare)
    want = f"{0o022 if umask is None else umask:04o}\n"
    assert obs.ref.stdout == want
    assert obs.mine.stdout == want, obs.mine


# Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this host lacks: raise only.
@pytest.mark.parametrize("adj", [None, 500, 1000])
def test_oom_score_adj(observe, adj):
    def prepare(b):
        if adj is not None:
            b.process["oomScoreAdj"] = adj

    obs = observe("cat", "/proc/self/oom_score_adj", prepare=prepare)
    if adj is not None:
        assert obs.ref.stdout == f"{adj}\n"
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_args_reach_the_process_unchanged(observe):
    args = ["printf", "[%s]\\n", "a b", "", "'quoted'", "$HOME", "ünï"]
    obs = observe(*args)
    assert obs.ref.stdout == "[a b]\n[]\n['quoted']\n[$HOME]\n[ünï]\n"
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_missing_executable_fails_with_one_error(observe):
    obs = observe("/bin/no-such-binary")
    assert obs.ref.returncode != 0
    assert obs.mine.returncode != 0
    assert "Traceback" not in obs.mine.stderr
    assert "no-such-binary" in obs.mine.stderr, obs.mine


def test_stdin_is_passed_through(runtime, new_bundle):
    res = runtime.run(new_bundle("sh", "-c", "read x; echo got:$x"), input=b"hello\n")
    assert res.stdout == "got:hello\n", res
