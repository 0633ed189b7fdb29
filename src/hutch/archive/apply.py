"""Apply an image layer to a directory with OCI semantics, never leaving that directory.

image-spec layer.md: entries add or replace files; ".wh.<name>" deletes <name> of the
lower layers; ".wh..wh..opq" hides everything the lower layers had in its directory.
Whiteouts only apply to lower layers: what this layer adds stays, whatever the order.

Safety: the root is held as an fd. Every parent directory is opened with
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so absolute symlinks and ".." in
symlinks resolve inside the root (CVE-2018-15664-style tricks, symlink-then-entry-
through-symlink); the final component is created, replaced, chowned and chmodded with
*at() calls relative to that parent fd that never follow it (O_NOFOLLOW,
AT_SYMLINK_NOFOLLOW, O_EXCL). Names with ".." components are refused outright (Go's
implementations refuse or clamp them; refusing is clearer). Hard-link targets are
resolved the same way, so "link -> /etc/shadow" can only mean the root's /etc/shadow.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import BinaryIO

from hutch.archive import tar
from hutch.archive.compress import DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO, open_layer
from hutch.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from hutch.linux import libc
from hutch.util.record import field, record

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_CHUNK = 1 << 20
_HOLE = 64 << 10
_ZEROS = bytes(_HOLE)
_MAX_CACHED_FDS = 64


@record
class ApplyResult:
    diff_id: str                 # "sha256:<hex>" of the uncompressed tar
    size: int                    # uncompressed tar bytes
    entries: int = 0             # tar entries applied (whiteouts included)
    compression: str = "none"    # "gzip", "zstd" or "none", from the magic bytes
    warnings: list[str] = field(default_factory=list)  # skipped devices/xattrs, why


def xattr_skip_reason(name: str) -> str | None:
    """Why an xattr from a layer is not applied, or None to apply it.

    Kept: user.* (except overlay's), security.capability and other security.* (file
    capabilities are part of images: ping, newuidmap), system.posix_acl_*. Skipped:
    trusted.* (host-privileged; overlayfs reads trusted.overlay.* as opaque/redirect/
    metacopy instructions, so a layer must never set them), user.overlay.* (the same in
    userxattr mode) and security.selinux (labels are the runtime's business; containerd
    and podman relabel rather than trust the image).
    """
    if name.startswith("trusted."):
        return "trusted.* xattrs are host-privileged"
    if name.startswith("user.overlay."):
        return "overlayfs metadata"
    if name == "security.selinux":
        return "SELinux labels are set by the runtime"
    if name.startswith(("user.", "security.", "system.posix_acl_")):
        return None
    return "unknown xattr namespace"


def _clean(name: str, what: str, entry: str) -> tuple[str, ...]:
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise InvalidArgument(f"layer entry {entry!r}: {what} has a '..' component",
                                  hint="the layer tries to write outside its root")
        parts.append(p)
    return tuple(parts)


def _write_sparse(fd: int, chunk: bytes) -> bool:
    """Write chunk, seeking over 64 KiB blocks of zeros so they stay holes (sparse
    files: lastlog, VM images); True if it left a hole (the caller truncates)."""
    view = memoryview(chunk)
    n = len(chunk)
    pos = 0
    hole = False
    while pos < n:
        end = min(pos + _HOLE, n)
        if chunk[pos:end] == _ZEROS[:end - pos]:
            os.lseek(fd, end - pos, os.SEEK_CUR)
            hole = True
            pos = end
            continue
        start = pos
        while end < n and chunk[end:min(end + _HOLE, n)] != _ZEROS[:min(_HOLE, n - end)]:
            end = min(end + _HOLE, n)
        data = view[start:end]
        while data:
            data = data[os.write(fd, data):]
        pos = end
    return hole


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Applier:
    def __init__(self, root_fd: int, same_owner: bool, result: ApplyResult) -> None:
        self.root_fd = root_fd
        self.same_owner = same_owner
        self.result = result
        self._dirs: dict[tuple[str, ...], tuple[int, int, int]] = {}  # path -> fd,dev,ino
        # (parent dev, parent ino, name) of everything this layer created or merged: the
        # keys survive symlinked parents, so opaque dirs and whiteouts spare them.
        self.unpacked: set[tuple[int, int, str]] = set()
        self.dir_times: dict[tuple[str, ...], int] = {}  # the last entry for a dir wins
        self._stale: list[int] = []

    # --- directory fds ---------------------------------------------------------------
    def close(self) -> None:
        self._forget()
        self.close_stale()

    def _forget(self) -> None:
        """Something was removed or replaced: cached paths may now resolve elsewhere.
        The fds stay open (callers still hold them) until the entry is done."""
        self._stale.extend(fd for fd, _, _ in self._dirs.values())
        self._dirs.clear()

    def close_stale(self) -> None:
        for fd in self._stale:
            os.close(fd)
        self._stale.clear()

    def dir(self, parts: tuple[str, ...], *, create: bool, entry: str
            ) -> tuple[int, int, int] | None:
        """(fd, dev, ino) of directory `parts` resolved inside the root, created (0755,
        root-owned, like containerd's MkdirAll) when missing and `create`."""
        cached = self._dirs.get(parts)
        if cached is not None:
            return cached
        try:
            fd = libc.openat2(self.root_fd, "/".join(parts) or ".",
                              os.O_PATH | os.O_DIRECTORY, resolve=_RESOLVE)
        except OSError as e:
            if e.errno == errno.ENOENT and create and parts:
                fd = self._mkdirs(parts, entry)
            elif e.errno in (errno.ENOENT, errno.ENOTDIR) and not create:
                return None
            else:
                raise InvalidArgument(f"layer entry {entry!r}: cannot open parent "
                                      f"directory {'/'.join(parts)!r}: {e.strerror}") from None
        st = os.fstat(fd)
        if len(self._dirs) >= _MAX_CACHED_FDS:
            self._forget()
        self._dirs[parts] = (fd, st.st_dev, st.st_ino)
        return self._dirs[parts]

    def _mkdirs(self, parts: tuple[str, ...], entry: str) -> int:
        parent = os.dup(self.root_fd)
        try:
            for i in range(len(parts)):
                sub = "/".join(parts[:i + 1])
                try:
                    fd = libc.openat2(self.root_fd, sub, os.O_PATH | os.O_DIRECTORY,
                                      resolve=_RESOLVE)
                except FileNotFoundError:
                    try:
                        os.mkdir(parts[i], 0o755, dir_fd=parent)
                    except FileExistsError:
                        raise InvalidArgument(
                            f"layer entry {entry!r}: parent {sub!r} is a dangling symlink"
                        ) from None
                    fd = libc.openat2(self.root_fd, sub, os.O_PATH | os.O_DIRECTORY,
                                      resolve=_RESOLVE)
                    os.chmod(parts[i], 0o755, dir_fd=parent, follow_symlinks=False)
                except OSError as e:
                    raise InvalidArgument(f"layer entry {entry!r}: cannot open parent "
                                          f"directory {sub!r}: {e.strerror}") from None
                os.close(parent)
                parent = fd
            return parent
        except BaseException:
            os.close(parent)
            raise

    # --- removal ---------------------------------------------------------------------
    def remove(self, pfd: int, name: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)  # fd-based, never follows symlinks (3.11)
        else:
            os.unlink(name, dir_fd=pfd)
        self._forget()

    # --- entries ---------------------------------------------------------------------
    def apply(self, e: tar.TarEntry, reader: tar.TarReader) -> None:
        parts = _clean(e.name, "name", e.name)
        if not parts:
            # "./" entries: containerd ignores what resolves to the root (the snapshot
            # directory is the snapshotter's); anything but a directory there is hostile.
            if e.type != tar.DIRTYPE:
                raise InvalidArgument(f"layer entry {e.name!r}: the root can only be a "
                                      "directory")
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(e, parts)
            return
        pfd, pdev, pino = self.dir(parts[:-1], create=True, entry=e.name)
        existing = _lstat(base, pfd)
        if e.type == tar.DIRTYPE:
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self.remove(pfd, base, existing)
                existing = None
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                self._meta_fd(fd, e)
            finally:
                os.close(fd)
            self.dir_times[parts] = e.mtime_ns
        elif e.type == tar.LNKTYPE:
            if not self._hardlink(e, pfd, base, existing):
                return
        else:
            if existing is not None:
                self.remove(pfd, base, existing)
            if e.type == tar.REGTYPE:
                self._regular(e, reader, pfd, base)
            elif e.type == tar.SYMTYPE:
                os.symlink(e.linkname, base, dir_fd=pfd)
                self._meta_at(pfd, base, e, chmod=False)
            elif not self._node(e, pfd, base):
                return
        self.unpacked.add((pdev, pino, base))

    def _regular(self, e: tar.TarEntry, reader: tar.TarReader, pfd: int, base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=pfd)
        try:
            holes = False
            while chunk := reader.read(_CHUNK):
                holes |= _write_sparse(fd, chunk)
            if holes:
                os.ftruncate(fd, e.size)
            self._meta_fd(fd, e)
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(fd)

    def _node(self, e: tar.TarEntry, pfd: int, base: str) -> bool:
        kind = {tar.CHRTYPE: stat.S_IFCHR, tar.BLKTYPE: stat.S_IFBLK,
                tar.FIFOTYPE: stat.S_IFIFO}[e.type]
        dev = os.makedev(e.devmajor, e.devminor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(base, kind | 0o600, dev, dir_fd=pfd)
        except PermissionError:
            # Unprivileged or in a user namespace: devices cannot be made (docker and
            # containerd skip them the same way); the runtime provides /dev anyway.
            self.result.warnings.append(f"{e.name}: device node skipped (no CAP_MKNOD)")
            return False
        self._meta_at(pfd, base, e, chmod=True)
        return True

    def _hardlink(self, e: tar.TarEntry, pfd: int, base: str,
                  existing: os.stat_result | None) -> bool:
        target = _clean(e.linkname, "hard link target", e.name)
        if not target:
            raise InvalidArgument(f"layer entry {e.name!r}: hard link to the root")
        tdir = self.dir(target[:-1], create=False, entry=e.name)
        tst = _lstat(target[-1], tdir[0]) if tdir else None
        if tst is None:
            raise InvalidArgument(f"layer entry {e.name!r}: hard link target "
                                  f"{e.linkname!r} does not exist in the layer or below")
        if stat.S_ISDIR(tst.st_mode):
            raise InvalidArgument(f"layer entry {e.name!r}: hard link to a directory")
        if existing is not None:
            if (existing.st_dev, existing.st_ino) == (tst.st_dev, tst.st_ino):
                return True  # already that file (a link to itself)
            self.remove(pfd, base, existing)
        # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, never followed.
        os.link(target[-1], base, src_dir_fd=tdir[0], dst_dir_fd=pfd,
                follow_symlinks=False)
        return True

    def whiteout(self, e: tar.TarEntry, parts: tuple[str, ...]) -> None:
        d = self.dir(parts[:-1], create=False, entry=e.name)
        if d is None:
            return  # nothing below to hide
        pfd, pdev, pino = d
        base = parts[-1]
        # Deleting changes the directory's mtime; put it back as umoci does, so a
        # whiteout leaves no trace but the absence (the layer may set it again anyway).
        before = os.fstat(pfd)
        if base == WHITEOUT_OPAQUE:
            fd = libc.openat2(pfd, ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                if self._opaque(fd):
                    os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            finally:
                os.close(fd)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {e.name!r}: invalid whiteout")
        if (pdev, pino, name) in self.unpacked:
            return  # layer.md: a whiteout never hides what its own layer added
        st = _lstat(name, pfd)
        if st is not None:
            self.remove(pfd, name, st)
            # utime has no AT_EMPTY_PATH in Python and pfd is O_PATH: go through its
            # magic link, which names exactly this directory.
            os.utime(f"/proc/self/fd/{pfd}", ns=(before.st_atime_ns, before.st_mtime_ns))

    def _opaque(self, dfd: int) -> bool:
        """Remove the lower content below dfd; True if anything was removed."""
        st = os.fstat(dfd)
        removed = False
        for name in os.listdir(dfd):
            cst = _lstat(name, dfd)
            if cst is None:
                continue
            if (st.st_dev, st.st_ino, name) in self.unpacked:
                if stat.S_ISDIR(cst.st_mode):
                    # Kept because this layer made or merged it; its lower content still
                    # goes.
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=dfd)
                    try:
                        if self._opaque(sub):
                            os.utime(sub, ns=(cst.st_atime_ns, cst.st_mtime_ns))
                    finally:
                        os.close(sub)
                continue
            self.remove(dfd, name, cst)
            removed = True
        return removed

    # --- metadata --------------------------------------------------------------------
    def _chown_failed(self, e: tar.TarEntry, err: OSError) -> None:
        raise PermissionDenied(
            f"layer entry {e.name!r}: cannot set owner {e.uid}:{e.gid}: {err.strerror}",
            hint="unpack with same_owner=False when not root or in a user namespace",
        ) from None

    def _xattrs(self, e: tar.TarEntry, target: int | str, follow: bool) -> None:
        for key, value in e.xattrs.items():
            reason = xattr_skip_reason(key)
            if reason:
                self.result.warnings.append(f"{e.name}: xattr {key} skipped ({reason})")
                continue
            try:
                os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise InvalidArgument(f"layer entry {e.name!r}: xattr {key}: "
                                          f"{err.strerror}") from None
                # Best effort like docker: user.* on symlinks, fs without xattrs.
                self.result.warnings.append(f"{e.name}: xattr {key} not set "
                                            f"({err.strerror})")

    def _meta_fd(self, fd: int, e: tar.TarEntry) -> None:
        """Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears
        security.capability)."""
        if self.same_owner:
            try:
                os.fchown(fd, e.uid, e.gid)
            except OSError as err:
                self._chown_failed(e, err)
        os.fchmod(fd, e.mode & 0o7777)
        if e.xattrs:
            self._xattrs(e, fd, True)

    def _meta_at(self, pfd: int, base: str, e: tar.TarEntry, *, chmod: bool) -> None:
        if self.same_owner:
            try:
                os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
            except OSError as err:
                self._chown_failed(e, err)
        if chmod:
            os.chmod(base, e.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        if e.xattrs:
            # os.setxattr has no dir_fd: name the file through the parent's fd. The
            # parent is a magic link to a directory inside the root, and the last
            # component is not followed.
            self._xattrs(e, f"/proc/self/fd/{pfd}/{base}", False)
        os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def finish_dirs(self) -> None:
        """Directory mtimes last: creating children changed them (tar(1) does the same)."""
        self.close()
        for parts, ns in self.dir_times.items():
            try:
                fd = libc.openat2(self.root_fd, "/".join(parts) or ".",
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  resolve=_RESOLVE)
            except OSError:
                continue  # replaced or whited out later in the layer
            try:
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)


def _entry_error(entry: tar.TarEntry, err: OSError) -> Exception:
    what = f"layer entry {entry.name!r}: {err.strerror}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE):
        return FailedPrecondition(what, entry=entry.name)
    if err.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(what, entry=entry.name)
    return InvalidArgument(what, entry=entry.name)


def apply_layer(stream: BinaryIO, root: str | os.PathLike[str], *,
                max_bytes: int = DEFAULT_MAX_BYTES,
                max_ratio: float | None = DEFAULT_MAX_RATIO,
                same_owner: bool = True,
                limits: tar.Limits | None = None,
                diff_id: str | None = None) -> ApplyResult:
    """Unpack a (gzip/zstd/plain) layer stream into the existing directory `root`.

    Returns the diff_id and uncompressed size (the whole stream is read, so the diff_id
    can be checked against the image config). Raises InvalidArgument (TarError) naming
    the entry for a malformed or hostile layer, PermissionDenied when ownership cannot be
    set with same_owner=True, LayerTooLarge past max_bytes/max_ratio, and
    InvalidArgument when `diff_id` is given and the tar's digest differs. Nothing outside
    `root` is ever created, changed or removed; on error, `root` holds a partial layer
    and should be discarded.
    """
    layer = open_layer(stream, max_bytes=max_bytes, max_ratio=max_ratio)
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidArgument(f"cannot open unpack root {os.fspath(root)!r}: "
                              f"{e.strerror}") from None
    result = ApplyResult(diff_id="", size=0)
    applier = _Applier(root_fd, same_owner, result)
    try:
        reader = tar.TarReader(layer, limits=limits)
        for entry in reader:
            try:
                applier.apply(entry, reader)
            except OSError as e:
                raise _entry_error(entry, e) from None
            finally:
                applier.close_stale()
            result.entries += 1
        applier.finish_dirs()
        layer.drain()
    finally:
        applier.close()
        os.close(root_fd)
    result.diff_id = layer.diff_id
    result.size = layer.size
    result.compression = layer.compression
    if diff_id is not None and diff_id != result.diff_id:
        raise InvalidArgument(f"layer diff_id mismatch: expected {diff_id}, got "
                              f"{result.diff_id}", hint="the blob is corrupt or the image "
                              "config lies; discard the unpacked directory")
    return result
