"""Resolve a docker `--user` against the container's /etc/passwd and /etc/group.

The rules are those of runc's libcontainer/user.GetExecUser, which docker calls with the
defaults uid 0, gid 0, home "/":

- the user part is a name or a number; a name must be in passwd ("unable to find user
  NAME: no matching entries in passwd file"), a number need not be (then gid 0, home /);
- a matched user brings its primary gid and home;
- the group part (after ':') is a name or a number, looked up in /etc/group the same way;
- with no group part, the supplementary groups are those listing the user name as a
  member.

Files are read under `root` (the container's rootfs) without following symlinks out of
it: a symlinked /etc/passwd in an image is resolved inside the root.
"""

from __future__ import annotations

import os

from hutch.errors import InvalidArgument
from hutch.util.record import field, record

_MAX_ID = (1 << 31) - 1  # runc: ids are ints bounded by minId/maxId


@record(frozen=True)
class ExecUser:
    uid: int
    gid: int
    home: str = "/"
    name: str = ""
    additional_gids: tuple[int, ...] = field(default=())


@record(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@record(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _read_in_root(root: str, path: str) -> str | None:
    """The text of `path` (absolute inside the container) under `root`, symlinks resolved
    inside the root, or None if it does not exist."""
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        if part == ".":
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:  # ELOOP
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    try:
        with open(os.path.join(root, *resolved), encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _id(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        return value if value <= _MAX_ID else None
    return None


def _parse_passwd(text: str) -> list[_Passwd]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split(":")
        f += [""] * (7 - len(f))
        uid, gid = _id(f[2]), _id(f[3])
        if uid is None:
            continue  # a malformed line: runc skips what it cannot parse as well
        entries.append(_Passwd(f[0], uid, gid or 0, f[5]))
    return entries


def _parse_group(text: str) -> list[_Group]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split(":")
        f += [""] * (4 - len(f))
        gid = _id(f[2])
        if gid is None:
            continue
        members = tuple(m for m in f[3].split(",") if m)
        entries.append(_Group(f[0], gid, members))
    return entries


def resolve_user(spec: str, root: str) -> ExecUser:
    """`spec` is docker's --user: "", "name", "uid", "uid:gid", "name:group", ...

    Raises InvalidArgument for names absent from the container's files.
    """
    user_arg, _, group_arg = spec.partition(":")
    passwd_text = _read_in_root(root, "/etc/passwd")
    group_text = _read_in_root(root, "/etc/group")
    users = _parse_passwd(passwd_text) if passwd_text is not None else []
    groups = _parse_group(group_text) if group_text is not None else []

    uid, gid, home, name = 0, 0, "/", ""
    uid_num = _id(user_arg) if user_arg else 0
    matched = None
    for u in users:
        if (user_arg and u.name == user_arg) or (uid_num is not None and u.uid == uid_num):
            matched = u
            break
    if matched is not None:
        uid, gid, home, name = matched.uid, matched.gid, matched.home or "/", matched.name
    elif uid_num is not None:
        uid = uid_num
    elif user_arg.isdigit():
        raise InvalidArgument(f"invalid user {user_arg}: uid out of range")
    else:
        raise InvalidArgument(
            f"unable to find user {user_arg}: no matching entries in passwd file")

    additional: list[int] = []
    if group_arg:
        gid_num = _id(group_arg)
        found = next((g for g in groups
                      if g.name == group_arg or (gid_num is not None and g.gid == gid_num)), None)
        if found is not None:
            gid = found.gid
        elif gid_num is not None:
            gid = gid_num
        elif group_arg.isdigit():
            raise InvalidArgument(f"invalid group {group_arg}: gid out of range")
        else:
            raise InvalidArgument(
                f"unable to find group {group_arg}: no matching entries in group file")
    elif name:
        additional = [g.gid for g in groups if name in g.members]
    return ExecUser(uid=uid, gid=gid, home=home, name=name, additional_gids=tuple(additional))
