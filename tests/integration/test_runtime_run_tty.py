"""`run` of a terminal=true bundle with no --console-socket: the runtime itself holds the
pty and copies it to its stdio (runc's behaviour, what `hutch-runtime spec && run` needs)."""

from __future__ import annotations

import os
import pty
import select
import time

import pytest

pytestmark = pytest.mark.integration


def _drive(argv: list[str], cwd: str, keys: bytes, timeout: float = 15.0) -> tuple[bytes, int]:
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.chdir(cwd)
        os.execv(argv[0], argv)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and b"# " in out:
            os.write(fd, keys)
            sent = True
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_run_with_a_terminal_proxies_the_pty_and_reports_the_exit_code(runtime, new_bundle):
    bundle = new_bundle("sh")
    bundle.process["terminal"] = True
    bundle.write()
    cid = runtime.new_id()
    runtime.ids.append(cid)
    out, code = _drive([runtime.binary, "--root", str(runtime.root), "run", cid],
                       str(bundle.path), b"tty; echo hello $((6*7)); exit 3\r")
    assert code == 3, out
    assert b"/dev/pts/0" in out
    assert b"hello 42" in out
