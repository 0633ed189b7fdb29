"""hutch.linux.seccomp: validation of `linux.seccomp`, rule expansion, and the filter
libseccomp builds from it (export_pfc needs libseccomp but no root and no kernel state)."""

from __future__ import annotations

import copy
import ctypes.util
import json
import subprocess
import sys

import pytest

from hutch.errors import NotSupported, SpecError
from hutch.linux import seccomp

pytestmark = pytest.mark.unit

GOOD = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 0},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
    ],
}


def bad(mutate) -> dict:
    spec = copy.deepcopy(GOOD)
    mutate(spec)
    return spec


def field_of(spec) -> str | None:
    with pytest.raises(SpecError) as info:
        seccomp.validate(spec)
    return info.value.field


# --- validate ------------------------------------------------------------------------------


def test_a_complete_spec_is_valid():
    seccomp.validate(GOOD)


def test_every_action_operator_and_arch_of_the_spec_is_known():
    for action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG"):
        seccomp.validate({"defaultAction": action})
    for op in seccomp.OPERATORS:
        seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 5, "value": 2**64 - 1, "valueTwo": 1, "op": op}]}]})
    seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW",
                      "architectures": list(seccomp.ARCHES)})


def test_an_empty_object_means_no_seccomp():
    seccomp.validate({})
    seccomp.validate({"defaultAction": "", "syscalls": []})
    assert not seccomp.is_enabled({})
    assert not seccomp.is_enabled(None)
    assert seccomp.is_enabled({"defaultAction": "SCMP_ACT_ALLOW"})


def test_syscalls_without_a_default_action_are_refused():
    spec = {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    assert field_of(spec) == "linux.seccomp.defaultAction"


def test_a_non_object_is_refused():
    assert field_of(["SCMP_ACT_ALLOW"]) == "linux.seccomp"


def test_unknown_default_action_names_the_field():
    spec = bad(lambda s: s.update(defaultAction="SCMP_ACT_DANCE"))
    assert field_of(spec) == "linux.seccomp.defaultAction"


def test_unknown_rule_action_names_the_rule():
    spec = bad(lambda s: s["syscalls"][1].update(action="ALLOW"))
    assert field_of(spec) == "linux.seccomp.syscalls[1].action"


def test_missing_rule_action_is_refused():
    spec = bad(lambda s: s["syscalls"][0].pop("action"))
    assert field_of(spec) == "linux.seccomp.syscalls[0].action"


def test_unknown_arch_names_its_position():
    spec = bad(lambda s: s["architectures"].append("SCMP_ARCH_VAX"))
    assert field_of(spec) == "linux.seccomp.architectures[3]"


def test_architectures_must_be_a_list():
    spec = bad(lambda s: s.update(architectures="SCMP_ARCH_X86_64"))
    assert field_of(spec) == "linux.seccomp.architectures"


def test_unknown_flag_is_refused():
    spec = bad(lambda s: s["flags"].append("SECCOMP_FILTER_FLAG_NEW_LISTENER"))
    assert field_of(spec) == "linux.seccomp.flags[1]"


def test_all_spec_flags_are_known():
    seccomp.validate(bad(lambda s: s.update(flags=sorted(seccomp.FLAGS))))


def test_unknown_operator_names_the_argument():
    spec = bad(lambda s: s["syscalls"][3]["args"][0].update(op="SCMP_CMP_ABOUT"))
    assert field_of(spec) == "linux.seccomp.syscalls[3].args[0].op"


@pytest.mark.parametrize("index", [6, -1, "0", True, None])
def test_argument_index_must_be_0_to_5(index):
    spec = bad(lambda s: s["syscalls"][3]["args"][0].update(index=index))
    assert field_of(spec) == "linux.seccomp.syscalls[3].args[0].index"


@pytest.mark.parametrize("value", [-1, 2**64, "0", 1.5, None])
def test_argument_value_must_be_an_unsigned_64_bit_integer(value):
    spec = bad(lambda s: s["syscalls"][3]["args"][0].update(value=value))
    assert field_of(spec) == "linux.seccomp.syscalls[3].args[0].value"


def test_argument_value_two_must_be_an_unsigned_64_bit_integer():
    spec = bad(lambda s: s["syscalls"][4]["args"][0].update(valueTwo=-5))
    assert field_of(spec) == "linux.seccomp.syscalls[4].args[0].valueTwo"


def test_args_must_be_a_list_of_objects():
    spec = bad(lambda s: s["syscalls"][3].update(args={"index": 0}))
    assert field_of(spec) == "linux.seccomp.syscalls[3].args"
    spec = bad(lambda s: s["syscalls"][3].update(args=[0]))
    assert field_of(spec) == "linux.seccomp.syscalls[3].args[0]"


@pytest.mark.parametrize("names", ["mkdir", None, {"mkdir": 1}])
def test_names_must_be_a_list(names):
    spec = bad(lambda s: s["syscalls"][1].update(names=names))
    assert field_of(spec) == "linux.seccomp.syscalls[1].names"


@pytest.mark.parametrize("name", ["", 83, None])
def test_each_name_must_be_a_non_empty_string(name):
    spec = bad(lambda s: s["syscalls"][1].update(names=["rmdir", name]))
    assert field_of(spec) == "linux.seccomp.syscalls[1].names[1]"


def test_a_syscalls_entry_must_be_an_object():
    spec = bad(lambda s: s["syscalls"].append("mkdir"))
    assert field_of(spec) == "linux.seccomp.syscalls[7]"


def test_errno_ret_on_an_action_without_errno_is_refused():
    # runtime-spec: "When the action doesn't support an errno, the runtime MUST ... fail"
    spec = bad(lambda s: s["syscalls"][0].update(errnoRet=1))
    assert field_of(spec) == "linux.seccomp.syscalls[0].errnoRet"
    spec = bad(lambda s: s.update(defaultAction="SCMP_ACT_ALLOW"))
    assert field_of(spec) == "linux.seccomp.defaultErrnoRet"


@pytest.mark.parametrize("value", [-1, 65536, "1", True])
def test_errno_ret_must_fit_in_16_bits(value):
    spec = bad(lambda s: s["syscalls"][1].update(errnoRet=value))
    assert field_of(spec) == "linux.seccomp.syscalls[1].errnoRet"


def test_notify_action_is_not_supported():
    spec = bad(lambda s: s["syscalls"][1].update(action="SCMP_ACT_NOTIFY"))
    spec["syscalls"][1].pop("errnoRet")
    with pytest.raises(NotSupported, match="SCMP_ACT_NOTIFY"):
        seccomp.validate(spec)
    with pytest.raises(NotSupported):
        seccomp.validate({"defaultAction": "SCMP_ACT_NOTIFY"})


def test_listener_path_is_not_supported():
    spec = bad(lambda s: s.update(listenerPath="/run/agent.sock", listenerMetadata="x"))
    with pytest.raises(NotSupported, match="listenerPath"):
        seccomp.validate(spec)


def test_neither_import_nor_validate_loads_libseccomp():
    # A fresh interpreter: the runtime validates before fork and must not pay for dlopen.
    code = ("import json, sys; from hutch.linux import seccomp; "
            "seccomp.validate(json.loads(sys.argv[1])); "
            "print('libseccomp' in open('/proc/self/maps').read())")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(GOOD)], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "False"


# --- rules ---------------------------------------------------------------------------------


def test_rules_equal_to_the_default_action_are_dropped():
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # EPERM == default
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},
    ]}
    assert [r.name for r in seccomp.rules(spec)] == ["rmdir"]


def test_errno_defaults_to_eperm():
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"}]}
    assert [r.action for r in seccomp.rules(spec)] == [0x00050001, 0x7FF00001]


def test_conditions_on_the_same_argument_become_separate_rules():
    args = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]
    spec = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_KILL", "args": args}]}
    assert [len(r.conditions) for r in seccomp.rules(spec)] == [1, 1]
    args[1]["index"] = 1
    assert [len(r.conditions) for r in seccomp.rules(spec)] == [2]


# --- export_pfc (libseccomp, no root) -------------------------------------------------------

needs_libseccomp = pytest.mark.skipif(ctypes.util.find_library("seccomp") is None,
                                      reason="libseccomp is not installed")


@needs_libseccomp
def test_export_pfc_has_a_rule_for_each_syscall():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    assert 'syscall "mkdir"' in pfc and 'syscall "rmdir"' in pfc
    assert "action ERRNO(13);" in pfc
    assert 'syscall "uname"' in pfc and "action KILL_PROCESS;" in pfc
    assert "action ALLOW;" in pfc  # the default


@needs_libseccomp
def test_export_pfc_compares_arguments():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xDEAD, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ"}]}]})
    assert f"{0xDEAD}" in pfc
    assert "& 0x7e020000 == 0" in pfc  # value is the mask, valueTwo the datum


@needs_libseccomp
def test_export_pfc_skips_syscalls_libseccomp_does_not_know():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall_2099", "mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert "no_such_syscall_2099" not in pfc
    assert 'syscall "mkdir"' in pfc


@needs_libseccomp
def test_export_pfc_filters_each_architecture():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW",
                              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                              "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert "filter for arch x86_64" in pfc and "filter for arch x86 " in pfc


@needs_libseccomp
def test_export_pfc_of_a_default_only_filter():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert "action ERRNO(38);" in pfc


@needs_libseccomp
def test_export_pfc_accepts_known_flags():
    for flag in sorted(seccomp.FLAGS):
        try:
            seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]})
        except NotSupported:
            pass  # an old kernel: refused clearly, never silently dropped


def test_export_pfc_of_a_disabled_config_is_empty():
    assert seccomp.export_pfc({}) == ""


def test_null_optional_numbers_mean_absent():
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": None, "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": None,
         "args": [{"index": 1, "value": 7, "valueTwo": None, "op": "SCMP_CMP_EQ"}]}]}
    seccomp.validate(spec)
    (rule,) = seccomp.rules(spec)
    assert rule.action == 0x00050001
    assert rule.conditions == (seccomp.Condition(1, seccomp.OPERATORS["SCMP_CMP_EQ"], 7, 0),)


@needs_libseccomp
def test_export_pfc_of_a_long_profile_uses_every_rule():
    # More than 32 entries switches on libseccomp's binary-tree optimisation, as runc does.
    names = ["read", "write", "openat", "close", "fstat", "lseek", "mmap", "mprotect",
             "munmap", "brk", "rt_sigaction", "rt_sigprocmask", "ioctl", "pread64",
             "pwrite64", "readv", "writev", "access", "pipe", "select", "sched_yield",
             "mremap", "msync", "mincore", "madvise", "dup", "dup2", "pause", "nanosleep",
             "getitimer", "alarm", "setitimer", "getpid", "sendfile", "socket", "connect"]
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": [n], "action": "SCMP_ACT_ALLOW"} for n in names]}
    pfc = seccomp.export_pfc(spec)
    assert all(f'syscall "{n}"' in pfc for n in names)
