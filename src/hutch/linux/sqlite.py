"""One SQLite switch Python 3.11's sqlite3 module does not expose:
SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE.

Why: when the last connection to a WAL database closes, SQLite checkpoints the WAL into
the database and deletes it: two fdatasyncs, and a third of the directory when the next
connection makes the WAL again. hutch's commands are short processes that open three
databases each, so `run --rm` paid ~24 syncs (~5 ms here) for a handful of small writes.
With the switch on, a close leaves the WAL for the next process, and checkpoints happen
only when a commit finds the WAL longer than `wal_autocheckpoint` pages (set by the
caller). Durability does not change: with synchronous=NORMAL a commit is never synced
at commit time anyway; a power cut may lose the last commits, never corrupt the file.

How: sqlite3_db_config() on the connection's `sqlite3 *`, which CPython keeps as the
first field after the object header of its Connection (Modules/_sqlite/connection.h,
3.8 to 3.13). The pointer is checked before use: sqlite3_db_filename() of it must name
the database the connection opened. Python 3.12+ has Connection.setconfig() and needs
none of this. Anything unexpected leaves the connection as it is: the cost is then only
speed.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3

SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE = 1006  # sqlite3.h, since 3.16

_lib: ctypes.CDLL | None | bool = None


def _sqlite_lib() -> ctypes.CDLL | None:
    """The SQLite library the sqlite3 module itself uses (through its extension module's
    handle, so never a second copy with its own globals)."""
    global _lib
    if _lib is None:
        _lib = False
        try:
            import _sqlite3

            lib = ctypes.CDLL(_sqlite3.__file__)
            lib.sqlite3_db_filename.restype = ctypes.c_char_p
            lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.sqlite3_db_config.restype = ctypes.c_int
            _lib = lib
        except (OSError, AttributeError, ImportError):
            pass
    return _lib or None


def no_checkpoint_on_close(conn: sqlite3.Connection, path: str) -> bool:
    """Turn off the checkpoint a close makes; True if it is off."""
    if hasattr(conn, "setconfig"):  # Python 3.12+
        op = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE",
                     SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE)
        try:
            conn.setconfig(op, True)
            return True
        except sqlite3.Error:
            return False
    lib = _sqlite_lib()
    if lib is None or not path or path == ":memory:":
        return False
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    if not handle:
        return False
    name = lib.sqlite3_db_filename(ctypes.c_void_p(handle), b"main")
    if not name or os.fsdecode(name) != os.path.realpath(path):
        return False
    out = ctypes.c_int(0)
    rc = lib.sqlite3_db_config(ctypes.c_void_p(handle),
                               ctypes.c_int(SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE),
                               ctypes.c_int(1), ctypes.byref(out))
    return rc == 0 and out.value == 1
