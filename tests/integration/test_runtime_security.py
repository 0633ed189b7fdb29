"""Security settings: capabilities, no_new_privs, seccomp, masked and readonly paths,
sysctls - as the container observes them, runc vs the runtime under test."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundles import status_fields

pytestmark = pytest.mark.integration

STATUS = "cat /proc/self/status"


def test_default_capabilities_nnp_and_seccomp_status(observe):
    obs = observe("cat", "/proc/self/status")
    ref = status_fields(obs.ref.stdout)
    # runc spec: AUDIT_WRITE, KILL, NET_BIND_SERVICE (bits 29, 5, 10)
    assert ref["CapEff"] == ref["CapPrm"] == ref["CapBnd"] == "0000000020000420"
    assert ref["NoNewPrivs"] == "1"
    assert obs.mine.ok, obs.mine
    assert status_fields(obs.mine.stdout) == ref


def test_capability_sets_from_the_spec_including_ambient(observe):
    caps = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_KILL"]

    def prepare(b):
        b.process["capabilities"] = {
            "bounding": caps + ["CAP_SYS_PTRACE"],
            "effective": caps,
            "permitted": caps,
            "inheritable": caps[:2],
            "ambient": caps[:1],
        }

    obs = observe("cat", "/proc/self/status", prepare=prepare)
    ref = status_fields(obs.ref.stdout)
    assert ref["CapAmb"] == "0000000000000001"
    assert ref["CapInh"] == "0000000000001001"
    assert obs.mine.ok, obs.mine
    assert status_fields(obs.mine.stdout) == ref


def test_non_root_user_keeps_only_ambient_capabilities(observe):
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]

    def prepare(b):
        b.process["user"] = {"uid": 1000, "gid": 1000}
        b.process["capabilities"] = {k: caps for k in
                                     ("bounding", "effective", "permitted", "inheritable",
                                      "ambient")}

    obs = observe("cat", "/proc/self/status", prepare=prepare)
    assert obs.mine.ok, obs.mine
    assert status_fields(obs.mine.stdout) == status_fields(obs.ref.stdout)


def test_no_capabilities_section_means_none(observe):
    obs = observe("cat", "/proc/self/status", prepare=lambda b: b.process.pop("capabilities"))
    ref = status_fields(obs.ref.stdout)
    assert ref["CapEff"] == "0000000000000000"
    assert status_fields(obs.mine.stdout) == ref, obs.mine


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(observe, nnp):
    obs = observe("grep", "NoNewPrivs", "/proc/self/status",
                  prepare=lambda b: b.process.update(noNewPrivileges=nnp))
    assert obs.ref.stdout.split() == ["NoNewPrivs:", "1" if nnp else "0"]
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def _seccomp_mkdir_eperm(b):
    b.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    b.spec["root"]["readonly"] = False


def test_seccomp_filter_from_the_spec(observe):
    obs = observe("sh", "-c", "grep -E '^Seccomp' /proc/self/status; mkdir /tmp/d 2>&1; "
                  "touch /tmp/f && echo touched; hostname x 2>&1; true",
                  prepare=_seccomp_mkdir_eperm)
    ref = obs.ref.stdout
    assert "Seccomp:\t2" in ref
    assert "Operation not permitted" in ref.splitlines()[2]
    assert "touched" in ref
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout == ref


def test_seccomp_kill_default_action(observe):
    def prepare(b):
        b.spec["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL"}],
        }

    obs = observe("/bin/pwd", prepare=prepare)
    assert obs.ref.returncode == 128 + 31, obs.ref  # SIGSYS
    assert obs.mine.returncode == obs.ref.returncode, obs.mine


def test_masked_paths_are_empty_or_unreadable(observe):
    script = (
        "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
        "  [ -e $p ] || continue; echo $p $(wc -c < $p 2>/dev/null || echo unreadable); "
        "done; echo firmware $(ls /sys/firmware | wc -l); echo acpi $(ls /proc/acpi 2>/dev/null | wc -l)"
    )
    obs = observe("sh", "-c", script)
    ref = obs.ref.stdout
    assert "firmware 0" in ref and "/proc/keys 0" in ref, ref
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout == ref


def test_readonly_paths_are_erofs(observe):
    script = (
        "{ echo 1 > /proc/sys/kernel/shm_rmid_forced; } 2>&1; "
        # vm.* is not namespaced: write back the current value, harmless if it got through
        "{ cat /proc/sys/vm/overcommit_memory > /proc/sys/vm/overcommit_memory; } 2>&1; "
        "grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/self/mountinfo | awk '{print $5, $6}'"
    )
    obs = observe("sh", "-c", script)
    ref = obs.ref.stdout
    assert ref.count("Read-only file system") == 2, ref
    assert obs.mine.ok, obs.mine
    assert sorted(obs.mine.stdout.splitlines()) == sorted(ref.splitlines())


def test_custom_masked_and_readonly_paths(observe):
    def prepare(b):
        b.spec["root"]["readonly"] = False
        (b.rootfs / "secret").mkdir()
        (b.rootfs / "secret" / "key").write_text("hunter2\n")
        (b.rootfs / "etc" / "ro.txt").write_text("ro\n")
        b.spec["linux"]["maskedPaths"] = ["/secret", "/etc/passwd", "/does/not/exist"]
        b.spec["linux"]["readonlyPaths"] = ["/etc/ro.txt", "/nope"]

    obs = observe("sh", "-c", "ls /secret | wc -l; wc -c < /etc/passwd; "
                  "{ echo x >> /etc/ro.txt; } 2>&1; cat /etc/ro.txt", prepare=prepare)
    ref = obs.ref.stdout.splitlines()
    assert ref[0] == "0" and ref[1] == "0"
    assert "Read-only file system" in ref[2]
    assert obs.mine.ok, obs.mine
    assert obs.mine.stdout.splitlines() == ref


def test_sysctls_are_applied(observe):
    def prepare(b):
        b.spec["linux"]["sysctl"] = {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "2",
            "kernel.msgmax": "12345",
        }

    obs = observe("cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter",
                  "/proc/sys/kernel/msgmax", prepare=prepare)
    assert obs.ref.stdout.split() == ["1", "2", "12345"], obs.ref
    assert obs.mine.stdout == obs.ref.stdout, obs.mine


def test_sysctl_outside_the_containers_namespaces_is_refused(observe):
    # A network sysctl without a network namespace would change the host. The value is
    # the host's current one, so a runtime that wrongly applies it changes nothing.
    current = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()

    def prepare(b):
        b.drop_namespace("network")
        b.spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": current}

    obs = observe("true", prepare=prepare)
    assert obs.ref.returncode != 0
    assert obs.mine.returncode != 0, obs.mine
