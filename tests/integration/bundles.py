"""Helpers for the runtime integration tests: busybox rootfs, OCI bundles, runtime CLIs.

Everything here is plain functions and small classes so the fixtures in conftest.py stay
thin. The runtimes are driven exactly as containerd's shim drives runc: the same argv
for runc and hutch-runtime, only the binary differs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
REPO = Path(__file__).resolve().parents[2]
HUTCH_RUNTIME = os.environ.get("HUTCH_RUNTIME", str(REPO / ".venv" / "bin" / "hutch-runtime"))

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nuser:x:1000:\nextra:x:1001:user\n"

# Everything a container or a runtime might leave behind carries this prefix.
PREFIX = "hutch-test"


def unique(kind: str = "c") -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:10]}"


# -- rootfs ---------------------------------------------------------------------------
def build_busybox_rootfs(dest: Path) -> Path:
    """A minimal rootfs: static busybox, one symlink per applet, passwd/group, the
    directories the default runc spec mounts onto."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "etc", "dev", "proc", "sys", "tmp", "root", "home/user", "mnt", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet == "busybox" or "/" in applet:
            continue
        link = dest / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    # /usr/bin and /sbin for PATH lookups and hooks that use absolute paths.
    for alias in ("sbin", "usr/bin", "usr/sbin"):
        p = dest / alias
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.symlink_to("/bin")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    (dest / "etc" / "hostname").write_text("busybox\n")
    return dest


def copy_rootfs(template: Path, dest: Path) -> Path:
    """A per-bundle copy; the busybox binary is hard-linked (cheap, 2 MB saved a test)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(template, dest, symlinks=True, copy_function=link_or_copy)
    return dest


_DEFAULT_SPEC: dict[str, Any] | None = None


def default_spec() -> dict[str, Any]:
    """`runc spec` defaults with terminal false (cached; a deep copy each call)."""
    global _DEFAULT_SPEC
    if _DEFAULT_SPEC is None:
        with tempfile.TemporaryDirectory(prefix="hutch-spec-") as d:
            subprocess.run([RUNC, "spec", "--bundle", d], check=True, capture_output=True)
            _DEFAULT_SPEC = json.loads(Path(d, "config.json").read_text())
        _DEFAULT_SPEC["process"]["terminal"] = False
    return copy.deepcopy(_DEFAULT_SPEC)


@dataclass
class Bundle:
    path: Path
    spec: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        root = Path(self.spec["root"]["path"])
        return root if root.is_absolute() else self.path / root

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def cgroups_path(self) -> str | None:
        return self.spec.get("linux", {}).get("cgroupsPath")

    @property
    def process(self) -> dict[str, Any]:
        return self.spec["process"]

    def set_args(self, *args: str) -> Bundle:
        self.spec["process"]["args"] = list(args)
        return self

    def add_mount(self, destination: str, type_: str, source: str, options: list[str]) -> None:
        self.spec.setdefault("mounts", []).append(
            {"destination": destination, "type": type_, "source": source, "options": options}
        )

    def drop_namespace(self, ns_type: str) -> None:
        nss = self.spec["linux"]["namespaces"]
        self.spec["linux"]["namespaces"] = [n for n in nss if n["type"] != ns_type]

    def set_namespace(self, ns_type: str, path: str | None = None) -> None:
        self.drop_namespace(ns_type)
        entry: dict[str, str] = {"type": ns_type}
        if path:
            entry["path"] = path
        self.spec["linux"]["namespaces"].append(entry)

    def write(self) -> None:
        self.config.write_text(json.dumps(self.spec, indent=1))


def make_bundle(
    template: Path, path: Path, args: list[str] | None = None, cgroups_path: str | None = None
) -> Bundle:
    path.mkdir(parents=True)
    copy_rootfs(template, path / "rootfs")
    spec = default_spec()
    spec["linux"]["cgroupsPath"] = cgroups_path or f"/{unique('cg')}"
    if args:
        spec["process"]["args"] = list(args)
    bundle = Bundle(path, spec)
    bundle.write()
    return bundle


# -- runtime CLI ----------------------------------------------------------------------
@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:  # what pytest shows when an assertion on a Result fails
        return (
            f"$ {' '.join(self.argv)}\n-> exit {self.returncode}\n"
            f"stdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-2000:]!r}"
        )


class RuntimeCommandError(AssertionError):
    pass


@dataclass
class Runtime:
    """One runtime binary with its own --root; remembers what to clean up."""

    name: str
    binary: str
    root: Path
    workdir: Path
    ids: list[str] = field(default_factory=list)
    bundles: list[Bundle] = field(default_factory=list)
    default_timeout: float = 30.0

    def argv(self, *args: str, log: Path | None = None, log_format: str | None = None) -> list[str]:
        cmd = [self.binary, "--root", str(self.root)]
        if log is not None:
            cmd += ["--log", str(log)]
        if log_format is not None:
            cmd += ["--log-format", log_format]
        return cmd + list(args)

    def new_id(self) -> str:
        cid = unique("c")
        self.ids.append(cid)
        return cid

    def track(self, bundle: Bundle) -> Bundle:
        self.bundles.append(bundle)
        return bundle

    def raw(
        self,
        argv: list[str],
        timeout: float | None = None,
        input: bytes | None = None,
        stdout_path: Path | None = None,
    ) -> Result:
        """Run argv with stdout/stderr in files, not pipes: a container started by
        `create`/`run -d` inherits them and would keep a pipe open forever."""
        fd, err_name = tempfile.mkstemp(dir=self.workdir, prefix="stderr-")
        os.close(fd)
        if stdout_path is None:
            fd, out_name = tempfile.mkstemp(dir=self.workdir, prefix="stdout-")
            os.close(fd)
            out_path = Path(out_name)
        else:
            out_path = stdout_path
        with open(out_path, "wb") as out, open(err_name, "wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                proc.communicate(input=input, timeout=timeout or self.default_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeCommandError(
                    f"{self.name}: timed out after {timeout or self.default_timeout}s: "
                    f"{' '.join(argv)}\nstderr: {Path(err_name).read_text(errors='replace')}"
                ) from None
        result = Result(
            argv,
            proc.returncode,
            out_path.read_text(errors="replace"),
            Path(err_name).read_text(errors="replace"),
        )
        os.unlink(err_name)
        if stdout_path is None:
            os.unlink(out_path)
        return result

    def cmd(self, *args: str, timeout: float | None = None, **kw: Any) -> Result:
        log = kw.pop("log", None)
        log_format = kw.pop("log_format", None)
        return self.raw(self.argv(*args, log=log, log_format=log_format), timeout=timeout, **kw)

    def check(self, *args: str, **kw: Any) -> Result:
        res = self.cmd(*args, **kw)
        if not res.ok:
            raise RuntimeCommandError(f"{self.name} failed:\n{res}")
        return res

    # -- verbs -------------------------------------------------------------------------
    def run(self, bundle: Bundle, cid: str | None = None, *extra: str, **kw: Any) -> Result:
        cid = self.new_id() if cid is None else cid
        self.track(bundle)
        bundle.write()
        return self.cmd("run", "--bundle", str(bundle.path), *extra, cid, **kw)

    def create(self, bundle: Bundle, cid: str | None = None, *extra: str, **kw: Any) -> Result:
        cid = self.new_id() if cid is None else cid
        self.track(bundle)
        bundle.write()
        return self.cmd("create", "--bundle", str(bundle.path), *extra, cid, **kw)

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self.check("state", cid).stdout)

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            res = self.cmd("state", cid)
            if res.ok:
                status = json.loads(res.stdout)["status"]
                if status == want:
                    return status
            time.sleep(0.05)
        return status

    def list_json(self) -> list[dict[str, Any]]:
        out = self.check("list", "--format", "json").stdout.strip()
        return json.loads(out) if out and out != "null" else []

    # -- cleanup -----------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Force-delete every container this runtime made, then remove anything left
        (processes, cgroups, mounts). Returns what had to be removed by hand."""
        leaks: list[str] = []
        for cid in self.ids:
            try:
                self.cmd("delete", "--force", cid, timeout=15)
            except RuntimeCommandError as exc:
                leaks.append(f"delete --force {cid} hung: {exc}")
        cgroups = [b.cgroups_path for b in self.bundles if b.cgroups_path]
        # Only distinctive needles: a hostile test's id ("", ".", "a/b") would match
        # every process on the machine.
        needles = [i for i in self.ids if i.startswith(PREFIX) and len(i) > 15]
        needles += [str(b.path) for b in self.bundles]
        for pid in find_processes(cgroups, needles):
            leaks.append(f"process {pid} ({cmdline(pid)!r})")
            kill_quietly(pid)
        time.sleep(0.05) if leaks else None
        for cg in cgroups:
            leaks += [f"cgroup {p}" for p in remove_cgroup(cg)]
        for mnt in unmount_under([self.root, *[b.path for b in self.bundles]]):
            leaks.append(f"mount {mnt}")
        return leaks


# -- host inspection and cleanup --------------------------------------------------------
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_controllers() -> dict[str, Path]:
    """Mounted cgroup hierarchies by name (v1 controllers, 'unified' for cgroup2)."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _src, opts = (post.split() + ["", "", ""])[:3]
        mnt = Path(fields[4])
        if fstype == "cgroup2":
            found["unified"] = mnt
        elif fstype == "cgroup":
            for opt in opts.split(","):
                if opt in {"rw", "ro"} or "=" in opt and not opt.startswith("name="):
                    continue
                found[opt.removeprefix("name=")] = mnt
    return found


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    rel = cgroups_path.lstrip("/")
    out = []
    for mnt in sorted(set(cgroup_controllers().values())):
        p = mnt / rel
        if p.is_dir():
            out.append(p)
    return out


def remove_cgroup(cgroups_path: str) -> list[Path]:
    """rmdir the cgroup (killing what is left in it) - only cgroups the tests named."""
    removed: list[Path] = []
    if PREFIX not in cgroups_path:
        return removed
    for path in cgroup_dirs(cgroups_path):
        # deepest first: a runtime may have made sub-cgroups
        for sub in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            _rmdir_retry(sub)
        if _rmdir_retry(path):
            removed.append(path)
    return removed


def _rmdir_retry(path: Path) -> bool:
    for _ in range(50):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            procs = path / "cgroup.procs"
            try:
                for pid in procs.read_text().split():
                    kill_quietly(int(pid))
            except OSError:
                pass
            time.sleep(0.05)
    return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def find_processes(cgroups: list[str], needles: list[str]) -> list[int]:
    """Processes in one of the cgroups, or whose argv mentions an id or bundle path."""
    me = {os.getpid(), os.getppid()}
    cgroups = [c for c in cgroups if c.strip("/")]  # never the root cgroup
    needles = [n for n in needles if len(n) > 10]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        pid = int(entry.name)
        try:
            cg = (entry / "cgroup").read_text()
        except OSError:
            continue
        hit = any(f":{c}\n" in cg or f":{c}/" in cg for c in cgroups)
        if not hit:
            argv = cmdline(pid)
            hit = any(n in argv for n in needles)
        if hit:
            found.append(pid)
    return found


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def host_mounts() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        out.append(line.split()[4].replace("\\040", " "))
    return out


def unmount_under(paths: list[Path]) -> list[str]:
    """Lazily unmount every host mount under one of paths (deepest first)."""
    prefixes = [str(p) for p in paths]
    hits = [m for m in host_mounts() if any(m == p or m.startswith(p + "/") for p in prefixes)]
    for m in sorted(set(hits), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    return hits


# -- observations normalised for comparison ---------------------------------------------
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


def status_fields(text: str, fields: tuple[str, ...] = STATUS_FIELDS) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[key] = value.strip()
    return out


def normalise_mountinfo(text: str, bundle: Bundle | None = None) -> list[tuple[str, ...]]:
    """(mount point, fs type, per-mount options, super options, propagation tags) per
    line, sorted, with mount ids, device numbers, peer-group numbers and the bundle's
    path and cgroupsPath removed. The set of mounts and their flags is what a runtime decides; the
    numbers are the kernel's."""
    rows = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        if len(fields) < 6:
            continue
        mnt_root, mnt_point, mnt_opts = fields[3], fields[4], fields[5]
        tags = ",".join(sorted(re.sub(r":\d+", "", t) for t in fields[6:]))
        fstype, source, super_opts = (post.split() + ["", "", ""])[:3]
        if bundle is not None:
            mnt_root = mnt_root.replace(str(bundle.path), "<bundle>")
            if bundle.cgroups_path:  # cgroup bind mounts: root is the container's cgroup
                mnt_root = mnt_root.replace(bundle.cgroups_path.rstrip("/"), "/<cgroup>")
        rows.append((mnt_point, fstype, mnt_opts, super_opts, tags, mnt_root))
    return sorted(rows)


def parse_limits(text: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in text.splitlines()[1:]:
        m = re.match(r"(.+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1).strip()] = (m.group(2), m.group(3))
    return out
