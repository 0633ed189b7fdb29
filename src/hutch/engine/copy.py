"""`hutch cp`: files between a container and the host, with docker's rules (moby
daemon/archive.go, pkg/archive/copy.go and the CLI's cp.go).

What is copied (PrepareArchiveCopy): a source ending in "/." copies a directory's
contents; a destination that is an existing directory receives the source under its own
name (or its contents); a destination that does not exist is created, taking the
source's place under the destination's name; a file replaces an existing file; a
directory onto an existing file, a file onto "missing/" (a path asserted to be a
directory), a source "file/" that is not a directory, and a missing destination parent
are errors. A symlink is copied as a symlink, unless -L (follow_link) copies what it
points to under the link's name. The same tar stream docker uses is produced either way;
"-" reads (copy_in) or writes (copy_out) that tar.

Safety (CVE-2018-15664 and its kin): a path inside the container is cleaned lexically,
then every directory on it is opened with openat2(RESOLVE_IN_ROOT), so symlinks in the
container ("/etc/passwd", "../../..", a link in a parent component) resolve inside its
root; the tree is read through file descriptors that never follow a symlink
(hutch.archive.diff.write_entry), and written with hutch.archive.apply_layer into the
directory held by fd, which places nothing outside it. Both hold while the container
runs and changes its files. Entries named ".wh.*" are left out (with a warning):
apply_layer would read them as whiteouts and delete their namesakes.

Volumes and binds (mount_for): a path at or under the destination of a bind mount in
the container's config["mounts"] (volumes are bind mounts too) is on that mount's source
on the host, not in the root file system (where a running container's mounts are not
visible from the host); the longest destination wins, and the path resolves inside the
source as it would inside the root. A symlink in the root file system that points into
a volume is resolved in the root file system (docker would follow it into the volume).
Read-only binds refuse copy_in; other mount types (tmpfs) cannot be reached.

Ownership: copy_in leaves what it creates owned by root:root unless `copy_uid_gid` (-a)
keeps the source's uids and gids; copy_out creates files owned by the caller.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO

from hutch.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from hutch.linux import libc
from hutch.util.record import field, record

_RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup


@record
class CopyResult:
    size: int = 0                                      # bytes of the tar copied
    warnings: list[str] = field(default_factory=list)  # entries left out, why


# -- paths ---------------------------------------------------------------------------------

@record(frozen=True)
class _Path:
    """A path as given, cleaned, remembering what docker reads from its tail."""

    clean: str
    contents: bool  # ends in "/." : a directory's contents
    as_dir: bool    # ends in "/" or "/." : asserted to be a directory

    @classmethod
    def container(cls, path: str) -> _Path:
        if not path:
            raise InvalidArgument("empty container path")
        clean = posixpath.normpath("/" + path.lstrip("/"))
        contents = path in (".", "/") or path.endswith("/.")
        return cls(clean, contents or clean == "/", contents or path.endswith("/"))

    @classmethod
    def host(cls, path: str) -> _Path:
        if not path:
            raise InvalidArgument("empty path")
        contents = path == "." or path.endswith("/.")
        return cls(os.path.normpath(path), contents, contents or path.endswith("/"))

    @property
    def base(self) -> str:
        return posixpath.basename(self.clean) or "/"


@record(frozen=True)
class MountedPath:
    """Where a container path is: `root` on the host and `path` inside it."""

    root: str
    path: str
    readonly: bool = False


def mount_for(rootfs: str, mounts: Iterable[dict], path: str) -> MountedPath:
    """The rule for volumes and binds (see the module docstring): `path` (absolute,
    cleaned) under the bind mount destination that is its longest prefix maps to that
    mount's source; anything else stays in `rootfs`. A bind of a single file answers for
    its destination exactly."""
    best: dict | None = None
    for m in mounts or ():
        dest = posixpath.normpath(str(m.get("destination") or "/"))
        if dest == "/" or not (path == dest or path.startswith(dest + "/")):
            continue
        if best is None or len(dest) > len(posixpath.normpath(best["destination"])):
            best = m
    if best is None:
        return MountedPath(rootfs, path)
    dest = posixpath.normpath(best["destination"])
    if best.get("type") != "bind":
        raise NotSupported(f"{path} is on a {best.get('type')} mount of the container "
                           f"({dest}): hutch cp cannot reach it")
    readonly = "ro" in (best.get("options") or [])
    source = str(best["source"])
    rest = path[len(dest):] or "/"
    if not os.path.isdir(source):
        if rest != "/":
            raise NotFound(f"{path}: not a directory ({dest} is a bind-mounted file)")
        return MountedPath(os.path.dirname(source), "/" + os.path.basename(source),
                           readonly)
    return MountedPath(source, rest, readonly)


class _Root:
    """A root directory held by fd; paths inside resolve with RESOLVE_IN_ROOT."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.real = os.readlink(f"/proc/self/fd/{self.fd}")

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, path: str) -> int | None:
        try:
            return libc.openat2(self.fd, path.lstrip("/") or ".",
                                os.O_PATH | os.O_DIRECTORY, resolve=_RESOLVE)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def path_of(self, fd: int) -> str:
        """The path inside the root of directory `fd` (opened inside it)."""
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real == self.real:
            return "/"
        prefix = self.real.rstrip("/") + "/"
        if not real.startswith(prefix):
            raise FailedPrecondition(f"{real}: moved out of the container while copying")
        return "/" + real[len(prefix):]


@record
class _Entry:
    """A resolved path: its parent directory (O_PATH fd, resolved in the root), its name
    there ("." for the root itself), its lstat (None: it does not exist) and its path
    inside the root with symlinks resolved."""

    pfd: int
    name: str
    st: os.stat_result | None
    path: str

    def close(self) -> None:
        os.close(self.pfd)

    @property
    def is_dir(self) -> bool:
        return self.st is not None and stat.S_ISDIR(self.st.st_mode)


def _lookup(root: _Root, path: str, *, follow: bool) -> _Entry | None:
    """Resolve `path` (absolute, cleaned) inside `root`: its directory with every
    symlink followed inside the root, its last component followed only if `follow`
    (docker's ResolvePath vs GetResourcePath). None if the directory does not exist."""
    for _ in range(_MAX_LINKS):
        parent, base = posixpath.split(path)
        if not base:
            fd = root.open_dir("/")
            return _Entry(fd, ".", os.stat(".", dir_fd=fd), "/")
        pfd = root.open_dir(parent)
        if pfd is None:
            return None
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None or not follow or not stat.S_ISLNK(st.st_mode):
            return _Entry(pfd, base, st, posixpath.join(root.path_of(pfd), base))
        try:
            target = os.readlink(base, dir_fd=pfd)
            path = posixpath.normpath(posixpath.join(root.path_of(pfd), target))
        finally:
            os.close(pfd)
    raise InvalidArgument(f"{path}: too many levels of symbolic links")


# -- streaming a tar from a writer to a reader -----------------------------------------------

class _Counting:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.count = 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.count += len(data)
        return len(data)


def _pipe(produce: Callable[[BinaryIO], None], consume: Callable[[BinaryIO], object]
          ) -> int:
    """Run produce(writable) in a thread and consume(readable) here, joined by a pipe;
    returns the bytes that went through. The producer's error wins: it explains the
    consumer's (a truncated tar)."""
    r, w = os.pipe()
    errors: list[BaseException] = []
    counted = [0]

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                c = _Counting(f)
                produce(c)
                counted[0] = c.count
        except BrokenPipeError:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    t = threading.Thread(target=run, name="hutch-cp", daemon=True)
    t.start()
    reader = os.fdopen(r, "rb")
    try:
        try:
            consume(reader)
        finally:
            reader.close()
    except BaseException:
        t.join()
        if errors:
            raise errors[0] from None
        raise
    t.join()
    if errors:
        raise errors[0]
    return counted[0]


def _reserved(warnings: list[str], where: str) -> Callable[[str], bool]:
    def skip(name: str) -> bool:
        if posixpath.basename(name).startswith(".wh."):
            warnings.append(f"{where}{name}: left out (names starting with .wh. are "
                            "layer whiteouts)")
            return True
        return False

    return skip


def _apply_into(dir_fd: int, stream: BinaryIO, same_owner: bool) -> None:
    from hutch.archive.apply import apply_layer

    apply_layer(stream, f"/proc/self/fd/{dir_fd}", same_owner=same_owner, max_ratio=None)


def _conflict(dir_fd: int, name: str, src_is_dir: bool, where: str, src: str) -> None:
    """docker's NoOverwriteDirNonDir, for the entry copied (not what is below it)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) and not src_is_dir:
        raise InvalidArgument(f'cannot overwrite directory "{where}" with non-directory '
                              f'"{src}"')
    if not stat.S_ISDIR(st.st_mode) and src_is_dir:
        raise InvalidArgument(f'cannot overwrite non-directory "{where}" with directory '
                              f'"{src}"')


# -- container -> host -------------------------------------------------------------------------

def copy_out(rootfs: str, src_path: str, dest: str | BinaryIO, *, follow_link: bool = False,
             mounts: Iterable[dict] = (), container: str = "") -> CopyResult:
    """Copy `src_path` of the container whose root file system is at `rootfs` to the
    host path `dest`, or as a tar to the writable binary stream `dest` ("-")."""
    src = _Path.container(src_path)
    where = mount_for(rootfs, mounts, src.clean)
    root = _Root(where.root)
    try:
        entry = _lookup(root, where.path, follow=follow_link)
        if entry is None or entry.st is None:
            if entry is not None:
                entry.close()
            raise NotFound(f"Could not find the file {src.clean} in container "
                           f"{container}".rstrip())
        try:
            return _copy_out(entry, src, dest)
        finally:
            entry.close()
    finally:
        root.close()


def _copy_out(entry: _Entry, src: _Path, dest: str | BinaryIO) -> CopyResult:
    result = CopyResult()
    src_is_dir = entry.is_dir
    if src.as_dir and not src_is_dir:
        raise InvalidArgument(f"{src.clean}: not a directory")
    contents = src.contents and src_is_dir
    if not isinstance(dest, str):
        out = _Counting(dest)
        from hutch.archive.diff import write_entry

        write_entry(entry.pfd, entry.name, out, arcname="" if contents else src.base)
        result.size = out.count
        return result
    d = _Path.host(dest)
    if os.path.isdir(d.clean):
        target, arcname = d.clean, "" if contents else src.base
    elif os.path.lexists(d.clean) and os.path.exists(d.clean):
        if src_is_dir:
            raise InvalidArgument(f"cannot copy directory {src.clean} onto file {dest}")
        target, arcname = os.path.dirname(d.clean) or ".", os.path.basename(d.clean)
    else:
        if d.as_dir and not src_is_dir:
            raise NotFound(f"destination directory {dest} does not exist")
        parent = os.path.dirname(os.path.abspath(d.clean))
        if not os.path.isdir(parent):
            raise NotFound(f"{parent}: no such directory")
        target, arcname = parent, os.path.basename(d.clean)
    tfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if arcname:
            _conflict(tfd, arcname, src_is_dir, os.path.join(target, arcname), src.clean)
        result.size = _transfer(entry.pfd, entry.name, arcname, tfd, same_owner=False,
                                warnings=result.warnings, where="")
    finally:
        os.close(tfd)
    return result


def _transfer(src_dir: int, src_name: str, arcname: str, dst_dir: int, *,
              same_owner: bool, warnings: list[str], where: str) -> int:
    from hutch.archive.diff import write_entry

    skip = _reserved(warnings, where)
    return _pipe(lambda out: write_entry(src_dir, src_name, out, arcname=arcname,
                                         skip=skip),
                 lambda stream: _apply_into(dst_dir, stream, same_owner))


# -- host -> container -------------------------------------------------------------------------

def copy_in(rootfs: str, src: str | BinaryIO, dest_path: str, *, copy_uid_gid: bool = False,
            follow_link: bool = False, mounts: Iterable[dict] = (),
            container: str = "", readonly_rootfs: bool = False) -> CopyResult:
    """Copy the host path `src`, or the tar read from the binary stream `src` ("-"),
    to `dest_path` in the container whose root file system is at `rootfs`
    (`readonly_rootfs`: the container runs with --read-only; only volumes take files)."""
    dst = _Path.container(dest_path)
    where = mount_for(rootfs, mounts, dst.clean)
    if where.readonly:
        raise PermissionDenied(f"mounted volume is marked read-only: {dst.clean}")
    if readonly_rootfs and where.root == rootfs:
        raise PermissionDenied("container rootfs is marked read-only")
    label = f"{container}:{dest_path}" if container else dest_path
    root = _Root(where.root)
    try:
        # The CLI's stat of the destination follows a symlink there (in the container).
        entry = _lookup(root, where.path, follow=True)
        if entry is None:
            raise NotFound(f"Could not find the file {posixpath.dirname(dst.clean)} in "
                           f"container {container}".rstrip())
        try:
            if entry.st is not None and not (entry.is_dir or stat.S_ISREG(entry.st.st_mode)):
                raise InvalidArgument(f'destination "{label}" must be a directory or a '
                                      "regular file")
            if not isinstance(src, str):
                return _copy_stream_in(entry, src, label, copy_uid_gid)
            return _copy_path_in(entry, src, dst, label, copy_uid_gid, follow_link)
        finally:
            entry.close()
    finally:
        root.close()


def _open_entry_dir(entry: _Entry) -> int:
    return os.open(entry.name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=entry.pfd)


def _copy_stream_in(entry: _Entry, stream: BinaryIO, label: str,
                    copy_uid_gid: bool) -> CopyResult:
    if not entry.is_dir:
        raise InvalidArgument(f'destination "{label}" must be a directory')
    dfd = _open_entry_dir(entry)
    try:
        counted = _CountingReader(stream)
        _apply_into(dfd, counted, copy_uid_gid)
    finally:
        os.close(dfd)
    return CopyResult(size=counted.count)


class _CountingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data


def _copy_path_in(entry: _Entry, src: str, dst: _Path, label: str, copy_uid_gid: bool,
                  follow_link: bool) -> CopyResult:
    s = _Path.host(src)
    base = os.path.basename(s.clean) if s.clean not in (".", "/") else ""
    real = os.path.realpath(s.clean) if follow_link else s.clean
    try:
        sst = os.stat(real, follow_symlinks=False)
    except FileNotFoundError:
        raise NotFound(f"{src}: no such file or directory") from None
    src_is_dir = stat.S_ISDIR(sst.st_mode)
    if s.as_dir and not src_is_dir:
        raise InvalidArgument(f"{src}: not a directory")
    contents = (s.contents or not base) and src_is_dir
    if contents:
        sdir, sname = real, "."
    else:
        sdir, sname = os.path.dirname(os.path.abspath(real)), os.path.basename(real)
    result = CopyResult()
    if entry.is_dir:
        tfd = _open_entry_dir(entry)
        arcname = "" if contents else base
    elif entry.st is not None:
        if src_is_dir:
            raise InvalidArgument(f'cannot copy directory "{src}" onto file "{label}"')
        tfd, arcname = os.dup(entry.pfd), entry.name
    else:
        if dst.as_dir and not src_is_dir:
            raise NotFound(f'destination directory "{label}" does not exist')
        tfd, arcname = os.dup(entry.pfd), entry.name
    try:
        if arcname:
            _conflict(tfd, arcname, src_is_dir, posixpath.join(entry.path, arcname)
                      if entry.is_dir else entry.path, src)
        sfd = os.open(sdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            result.size = _transfer(sfd, sname, arcname, tfd, same_owner=copy_uid_gid,
                                    warnings=result.warnings, where=f"{sdir}/")
        finally:
            os.close(sfd)
    finally:
        os.close(tfd)
    return result
