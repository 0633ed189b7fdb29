"""seccomp filters from an OCI `linux.seccomp` object, built with libseccomp through ctypes.

Three entry points:

- `validate(seccomp)` checks the object (runtime-spec config-linux.md#seccomp). Pure
  Python, no libseccomp: the runtime calls it before fork on every create.
- `load(seccomp)` builds the filter with libseccomp and loads it into the calling process.
  The caller sets no_new_privs itself (or keeps CAP_SYS_ADMIN): we tell libseccomp not to.
- `export_pfc(seccomp)` renders the filter as libseccomp's pseudo filter code (tests, debug).

What we do the way runc does (libcontainer/seccomp, specconv), so configs written for runc
behave the same here:

- an object with an empty defaultAction and no syscalls means "no seccomp";
- OCI arch names map to libseccomp's (SCMP_ARCH_X86_64 -> "x86_64"), and an arch that is
  in the filter already (the native one always is) is not an error;
- errnoRet / defaultErrnoRet default to EPERM;
- syscall names the host libseccomp cannot resolve are skipped silently (a profile written
  for a newer kernel names syscalls this host lacks);
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- several conditions on the same argument of one syscall become one rule per condition
  (libseccomp 2.5 answers EINVAL to two comparisons of one argument in a rule; runc
  falls back to separate rules, which ORs them);
- SECCOMP_FILTER_FLAG_TSYNC is accepted and ignored (we are single-threaded after fork);
- when `flags` is absent (not merely empty), SPEC_ALLOW is set if the kernel has it, as
  crun and runc >= 1.2 do (runc 1.1.5 refuses every flag): the speculative store bypass
  mitigation that seccomp would otherwise force costs a lot and nobody asked for it.

Not done: runc's "patchbpf" -ENOSYS stub (syscalls newer than any in the profile return
ENOSYS instead of the default errno, so glibc falls back from e.g. clone3) and
SCMP_ACT_NOTIFY / listenerPath (NotSupported).

libseccomp is loaded on first use, not at import. Its functions return negative errno
values (not -1 with errno set); failures raise OSError naming the libseccomp call.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator, Mapping

from hutch.errors import NotSupported, SpecError

# --- OCI names ---------------------------------------------------------------------------

# libseccomp's action values (seccomp.h); ERRNO and TRACE carry 16 bits of data.
_SCMP_ACT_KILL_PROCESS = 0x80000000
_SCMP_ACT_KILL_THREAD = 0x00000000
_SCMP_ACT_TRAP = 0x00030000
_SCMP_ACT_NOTIFY = 0x7FC00000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000
_SCMP_ACT_LOG = 0x7FFC0000
_SCMP_ACT_ALLOW = 0x7FFF0000

ACTIONS: Mapping[str, int] = {
    # SCMP_ACT_KILL has always meant "kill the thread" (seccomp.h: SCMP_ACT_KILL is
    # SCMP_ACT_KILL_THREAD); runc maps it the same way.
    "SCMP_ACT_KILL": _SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": _SCMP_ACT_ERRNO,
    "SCMP_ACT_TRACE": _SCMP_ACT_TRACE,
    "SCMP_ACT_ALLOW": _SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": _SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": _SCMP_ACT_NOTIFY,
}
# The spec: "When the action doesn't support an errno, the runtime MUST print an error and
# fail" -- only these two take one.
_ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

# enum scmp_compare (seccomp.h)
OPERATORS: Mapping[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI arch -> the name seccomp_arch_resolve_name() knows. Whether the host libseccomp has
# the arch is only known at load time (loongarch64 needs libseccomp >= 2.6).
ARCHES: Mapping[str, str] = {
    f"SCMP_ARCH_{name.upper()}": name
    for name in (
        "x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel",
        "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc",
        "parisc64", "riscv64", "loongarch64",
    )
}

FLAG_TSYNC = "SECCOMP_FILTER_FLAG_TSYNC"
FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
FLAG_SPEC_ALLOW = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
FLAG_WAIT_KILLABLE_RECV = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
FLAGS = frozenset({FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_WAIT_KILLABLE_RECV})

_MAX_ARGS = 6  # a Linux syscall has at most six arguments
_U64 = 1 << 64
_FIELD = "linux.seccomp"


# --- validation (pure Python) ------------------------------------------------------------


def is_enabled(seccomp: Mapping | None) -> bool:
    """False for an absent object and, as runc decides, for one with neither a default
    action nor syscalls: such a config asks for no filter at all."""
    if not seccomp:
        return False
    return bool(seccomp.get("defaultAction")) or bool(seccomp.get("syscalls"))


def validate(seccomp: Mapping) -> None:
    """Raise SpecError (field = the offending key) for a malformed `linux.seccomp`, or
    NotSupported for user notification (SCMP_ACT_NOTIFY, listenerPath)."""
    if not isinstance(seccomp, Mapping):
        raise SpecError("linux.seccomp must be an object", field=_FIELD)
    if not is_enabled(seccomp):
        return
    default = seccomp.get("defaultAction")
    _check_action(default, f"{_FIELD}.defaultAction")
    # JSON null is "absent" here, as it is for runc's Go decoder (a nil *uint).
    if seccomp.get("defaultErrnoRet") is not None:
        _check_errno_ret(seccomp["defaultErrnoRet"], default, f"{_FIELD}.defaultErrnoRet")

    arches = _list(seccomp, "architectures", _FIELD)
    for i, arch in enumerate(arches):
        if arch not in ARCHES:
            raise SpecError(f"unknown seccomp architecture {arch!r}",
                            field=f"{_FIELD}.architectures[{i}]")

    flags = _list(seccomp, "flags", _FIELD)
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise SpecError(f"unknown seccomp flag {flag!r}", field=f"{_FIELD}.flags[{i}]")

    listener = seccomp.get("listenerPath")
    if listener is not None and not isinstance(listener, str):
        raise SpecError("listenerPath must be a string", field=f"{_FIELD}.listenerPath")
    if listener:
        raise NotSupported("seccomp user notification (listenerPath) is not supported by "
                           "hutch-runtime", field=f"{_FIELD}.listenerPath")
    meta = seccomp.get("listenerMetadata")
    if meta is not None and not isinstance(meta, str):
        raise SpecError("listenerMetadata must be a string",
                        field=f"{_FIELD}.listenerMetadata")

    for i, call in enumerate(_list(seccomp, "syscalls", _FIELD)):
        _check_syscall(call, f"{_FIELD}.syscalls[{i}]")


def _list(obj: Mapping, key: str, where: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{key} must be a list", field=f"{where}.{key}")
    return value


def _check_action(action: object, field: str) -> None:
    if not isinstance(action, str) or not action:
        raise SpecError("a seccomp action is required", field=field)
    if action not in ACTIONS:
        raise SpecError(f"unknown seccomp action {action!r}", field=field)
    if action == "SCMP_ACT_NOTIFY":
        raise NotSupported("seccomp action SCMP_ACT_NOTIFY (user notification) is not "
                           "supported by hutch-runtime", field=field)


def _is_uint(value: object, limit: int) -> bool:
    # bool is an int in Python; JSON true is not a number.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit


def _check_errno_ret(value: object, action: object, field: str) -> None:
    if action not in _ERRNO_ACTIONS:
        raise SpecError(f"{action} does not take an errno return code", field=field)
    # The kernel keeps 16 bits of data in the filter's return value (SECCOMP_RET_DATA).
    if not _is_uint(value, 1 << 16):
        raise SpecError(f"errno return code must be an integer 0..65535, not {value!r}",
                        field=field)


def _check_syscall(call: object, where: str) -> None:
    if not isinstance(call, Mapping):
        raise SpecError("a syscalls entry must be an object", field=where)
    names = call.get("names")
    if not isinstance(names, list):
        raise SpecError("names must be a list of syscall names", field=f"{where}.names")
    for j, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise SpecError(f"a syscall name must be a non-empty string, not {name!r}",
                            field=f"{where}.names[{j}]")
    action = call.get("action")
    _check_action(action, f"{where}.action")
    if call.get("errnoRet") is not None:
        _check_errno_ret(call["errnoRet"], action, f"{where}.errnoRet")
    for k, arg in enumerate(_list(call, "args", where)):
        field = f"{where}.args[{k}]"
        if not isinstance(arg, Mapping):
            raise SpecError("an args entry must be an object", field=field)
        index = arg.get("index")
        if not _is_uint(index, _MAX_ARGS):
            raise SpecError(f"argument index must be 0..5, not {index!r}",
                            field=f"{field}.index")
        if not _is_uint(arg.get("value"), _U64):
            raise SpecError(f"value must be an unsigned 64-bit integer, not "
                            f"{arg.get('value')!r}", field=f"{field}.value")
        if arg.get("valueTwo") is not None and not _is_uint(arg["valueTwo"], _U64):
            raise SpecError(f"valueTwo must be an unsigned 64-bit integer, not "
                            f"{arg['valueTwo']!r}", field=f"{field}.valueTwo")
        if arg.get("op") not in OPERATORS:
            raise SpecError(f"unknown seccomp operator {arg.get('op')!r}",
                            field=f"{field}.op")


# --- the filter as plain data --------------------------------------------------------------


# Plain slotted classes, not dataclasses: this module is on the runtime's start-up path
# and a dataclass costs ~0.5 ms to define.
class Condition:
    """One scmp_arg_cmp: argument `index` compared with `op` (for SCMP_CMP_MASKED_EQ,
    `value` is the mask and `value_two` the datum, as libseccomp and runc read them)."""

    __slots__ = ("index", "op", "value", "value_two")

    def __init__(self, index: int, op: int, value: int, value_two: int = 0) -> None:
        self.index, self.op, self.value, self.value_two = index, op, value, value_two

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Condition{self._key()!r}"

    def _key(self) -> tuple[int, int, int, int]:
        return (self.index, self.op, self.value, self.value_two)


class Rule:
    """One seccomp_rule_add call: `name` -> `action` when all `conditions` hold."""

    __slots__ = ("name", "action", "conditions")

    def __init__(self, name: str, action: int, conditions: tuple[Condition, ...] = ()) -> None:
        self.name, self.action, self.conditions = name, action, conditions

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Rule{self._key()!r}"

    def _key(self) -> tuple[str, int, tuple[Condition, ...]]:
        return (self.name, self.action, self.conditions)


def action_value(action: str, errno_ret: int | None) -> int:
    """libseccomp's value for an OCI action; ERRNO and TRACE default to EPERM like runc."""
    value = ACTIONS[action]
    if action in _ERRNO_ACTIONS:
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def rules(seccomp: Mapping) -> Iterator[Rule]:
    """The rules of a validated spec, in order, without the ones equal to the default
    action. Name resolution is left to libseccomp."""
    default = action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    for call in seccomp.get("syscalls") or ():
        action = action_value(call["action"], call.get("errnoRet"))
        if action == default:
            continue  # redundant, and libseccomp would refuse it (EACCES)
        conds = tuple(Condition(a["index"], OPERATORS[a["op"]], a["value"],
                                a.get("valueTwo") or 0) for a in call.get("args") or ())
        # libseccomp refuses two comparisons of one argument in a rule; runc then adds one
        # rule per condition, which makes them alternatives (OR) instead of AND.
        indexes = [c.index for c in conds]
        if len(set(indexes)) != len(indexes):
            groups: tuple[tuple[Condition, ...], ...] = tuple((c,) for c in conds)
        else:
            groups = (conds,)
        for name in call["names"]:
            for group in groups:
                yield Rule(name, action, group)


# --- libseccomp through ctypes ---------------------------------------------------------

# enum scmp_filter_attr (seccomp.h, libseccomp 2.5)
_ATTR_CTL_NNP = 3
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name(): name unknown on every arch


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as e:
        raise NotSupported("libseccomp.so.2 cannot be loaded: seccomp filters need it",
                           hint="install libseccomp2") from e
    ctx = ctypes.c_void_p
    sigs = {
        "seccomp_init": (ctx, [ctypes.c_uint32]),
        "seccomp_release": (None, [ctx]),
        "seccomp_arch_resolve_name": (ctypes.c_uint32, [ctypes.c_char_p]),
        "seccomp_arch_add": (ctypes.c_int, [ctx, ctypes.c_uint32]),
        "seccomp_attr_get": (ctypes.c_int, [ctx, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_uint32)]),
        "seccomp_attr_set": (ctypes.c_int, [ctx, ctypes.c_int, ctypes.c_uint32]),
        "seccomp_syscall_resolve_name": (ctypes.c_int, [ctypes.c_char_p]),
        "seccomp_rule_add_array": (ctypes.c_int, [ctx, ctypes.c_uint32, ctypes.c_int,
                                                  ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
        "seccomp_load": (ctypes.c_int, [ctx]),
        "seccomp_export_pfc": (ctypes.c_int, [ctx, ctypes.c_int]),
        "seccomp_export_bpf": (ctypes.c_int, [ctx, ctypes.c_int]),
        "seccomp_api_get": (ctypes.c_uint, []),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


def _check(call: str, rc: int, what: str | None = None) -> int:
    if rc < 0:
        detail = f" ({what})" if what else ""
        raise OSError(-rc, f"{call}{detail}: {os.strerror(-rc)}")
    return rc


class _Filter:
    """A libseccomp filter context; `with` releases it."""

    def __init__(self, seccomp: Mapping) -> None:
        self._lib = lib = _libseccomp()
        default = action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
        self.ctx = lib.seccomp_init(default)
        if not self.ctx:
            # NULL: the action is invalid or unknown to the kernel (e.g. KILL_PROCESS or
            # LOG on an old kernel: libseccomp checks the API level).
            raise OSError(errno.EINVAL, f"seccomp_init: cannot use default action "
                          f"{seccomp['defaultAction']}")
        try:
            self._configure(seccomp)
        except BaseException:
            self.close()
            raise

    def _configure(self, seccomp: Mapping) -> None:
        lib, ctx = self._lib, self.ctx
        # The runtime sets no_new_privs itself, at the point the spec asks for it.
        _check("seccomp_attr_set", lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "CTL_NNP")
        # Report the kernel's own errno from seccomp_load instead of ECANCELED (2.5+).
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)

        for i, oci in enumerate(seccomp.get("architectures") or ()):
            token = lib.seccomp_arch_resolve_name(ARCHES[oci].encode())
            if token == 0:
                raise NotSupported(f"seccomp architecture {oci} is unknown to the host "
                                   f"libseccomp", field=f"{_FIELD}.architectures[{i}]")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc != -errno.EEXIST:  # the native arch is always there already
                _check("seccomp_arch_add", rc, oci)

        self._set_flags(seccomp.get("flags"))

        syscalls = seccomp.get("syscalls") or ()
        if len(syscalls) > 32:
            # Binary-tree dispatch for long profiles, as runc does (libseccomp <= 2.5.4
            # misbehaves with it on an empty rule set, hence the threshold). Optional.
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)

        numbers: dict[str, int] = {}
        for rule in rules(seccomp):
            nr = numbers.get(rule.name)
            if nr is None:
                nr = numbers[rule.name] = lib.seccomp_syscall_resolve_name(rule.name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to this libseccomp: skipped like runc does
            n = len(rule.conditions)
            args = (_ArgCmp * max(n, 1))(*(
                _ArgCmp(c.index, c.op, c.value, c.value_two) for c in rule.conditions))
            _check("seccomp_rule_add_array",
                   lib.seccomp_rule_add_array(ctx, rule.action, nr, n, args), rule.name)

    def _set_flags(self, flags: list[str] | None) -> None:
        lib, ctx = self._lib, self.ctx
        if flags is None:
            # No flags key at all: SPEC_ALLOW when available (runc, crun). Best effort.
            lib.seccomp_attr_set(ctx, _ATTR_CTL_SSB, 1)
            return
        for i, flag in enumerate(flags):
            if flag == FLAG_LOG:
                attr = _ATTR_CTL_LOG
            elif flag == FLAG_SPEC_ALLOW:
                attr = _ATTR_CTL_SSB
            else:
                # TSYNC: there is one thread after fork, nothing to sync (runc ignores it
                # too). WAIT_KILLABLE_RECV only changes how a notifying task waits for its
                # listener; without SCMP_ACT_NOTIFY (unsupported here) it means nothing,
                # and the kernel refuses it without SECCOMP_FILTER_FLAG_NEW_LISTENER.
                continue
            rc = lib.seccomp_attr_set(ctx, attr, 1)
            if rc in (-errno.EOPNOTSUPP, -errno.EINVAL):
                raise NotSupported(f"seccomp flag {flag} is not supported by this kernel "
                                   f"or libseccomp", field=f"{_FIELD}.flags[{i}]")
            _check("seccomp_attr_set", rc, flag)

    def load(self) -> None:
        _check("seccomp_load", self._lib.seccomp_load(self.ctx))

    def load_flags(self) -> int:
        """The SECCOMP_FILTER_FLAG_* seccomp_load passes (from the attributes we set)."""
        flags = 0
        for attr, flag in ((_ATTR_CTL_LOG, _FILTER_FLAG_LOG), (_ATTR_CTL_SSB,
                                                                 _FILTER_FLAG_SPEC_ALLOW)):
            value = ctypes.c_uint32(0)
            if self._lib.seccomp_attr_get(self.ctx, attr, ctypes.byref(value)) == 0 \
                    and value.value:
                flags |= flag
        return flags

    def export_bpf(self) -> bytes:
        fd = os.memfd_create("hutch-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check("seccomp_export_bpf", self._lib.seccomp_export_bpf(self.ctx, fd))
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def export_pfc(self) -> str:
        fd = os.memfd_create("hutch-seccomp-pfc", os.MFD_CLOEXEC)
        try:
            _check("seccomp_export_pfc", self._lib.seccomp_export_pfc(self.ctx, fd))
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.ctx:
            self._lib.seccomp_release(self.ctx)
            self.ctx = None

    def __enter__(self) -> _Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(seccomp: Mapping) -> None:
    """Build the filter for `seccomp` and load it into the calling process (all later
    execve()s inherit it). A disabled config (see is_enabled) loads nothing.

    The caller must have set no_new_privs or hold CAP_SYS_ADMIN, or the kernel says EACCES.
    Keep the work between this call and execve() small: it runs under the filter.
    """
    validate(seccomp)
    if not is_enabled(seccomp):
        return
    with _Filter(seccomp) as f:
        f.load()


def preload() -> None:
    """Load libseccomp ahead of a prepare() (the engine's monitor does this while the
    container is still being set up)."""
    try:
        _libseccomp()
    except NotSupported:
        pass


def prepare(seccomp: Mapping, *, cache_dir: str | None = None):
    """Build the filter now and return it unloaded (None if disabled); call .load() later
    and .close() when done. The runtime builds in the parent, before fork: after
    pivot_root the host's libseccomp is out of reach, and building there would only add
    syscalls that the filter's own rules might forbid.

    With `cache_dir`, the compiled BPF program is kept there, keyed by the profile, the
    libseccomp build and the kernel: docker's default profile costs ~15 ms to compile
    through libseccomp and the same profile comes back on every `run`. A cached program is
    loaded with the seccomp(2) syscall and the flags libseccomp would have passed."""
    validate(seccomp)
    if not is_enabled(seccomp):
        return None
    if cache_dir is None:
        return _Filter(seccomp)
    key = _cache_key(seccomp)
    path = os.path.join(cache_dir, key + ".bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) >= 8 and (len(data) - 4) % 8 == 0:
            return _CachedFilter(int.from_bytes(data[:4], "little"), data[4:])
    except OSError:
        pass
    flt = _Filter(seccomp)
    try:
        blob = flt.load_flags().to_bytes(4, "little") + flt.export_bpf()
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written is only slower
    return flt


_FILTER_FLAG_LOG = 1 << 1
_FILTER_FLAG_SPEC_ALLOW = 1 << 2


def _cache_key(seccomp: Mapping) -> str:
    from hutch.util import fastjson  # json.dumps(sort_keys, compact), without json's import

    try:  # CPython's own sha256: hashlib's import initialises OpenSSL (~2 ms a start)
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

    lib = _libseccomp()
    ver = lib.seccomp_version()
    try:
        so = os.stat(lib._name if os.path.isabs(lib._name) else "/proc/self/exe")
        so_id = (so.st_ino, so.st_mtime_ns)
    except OSError:
        so_id = ()
    h = sha256()
    h.update(fastjson.dumps_sorted(seccomp).encode())
    h.update(repr((ver.contents.major, ver.contents.minor, ver.contents.micro, so_id,
                   os.uname().release, os.uname().machine,
                   lib.seccomp_api_get())).encode())
    return h.hexdigest()


class _CachedFilter:
    """A compiled program from the cache, loaded with seccomp(SECCOMP_SET_MODE_FILTER)."""

    def __init__(self, flags: int, program: bytes) -> None:
        from hutch.linux import libc

        self._flags = flags
        self._set = libc.seccomp_set_filter_prepared(program)

    def load(self) -> None:
        try:
            self._set(self._flags)
        except OSError as e:
            # SPEC_ALLOW is best effort, as when libseccomp builds the filter.
            if e.errno != errno.EINVAL or not self._flags & _FILTER_FLAG_SPEC_ALLOW:
                raise
            self._set(self._flags & ~_FILTER_FLAG_SPEC_ALLOW)

    def close(self) -> None:
        pass


def export_pfc(seccomp: Mapping) -> str:
    """The filter as libseccomp pseudo filter code (human-readable), for tests and debug."""
    validate(seccomp)
    if not is_enabled(seccomp):
        return ""
    with _Filter(seccomp) as f:
        return f.export_pfc()
