"""terminal: true through --console-socket: the runtime sends the pty master to the
socket (SCM_RIGHTS); the receiver reads the container's output and types into it."""

from __future__ import annotations

import time

import pytest
from consolesock import ConsoleReceiver

pytestmark = pytest.mark.integration


def _terminal_bundle(new_bundle, *args):
    bundle = new_bundle(*args)
    bundle.process["terminal"] = True
    bundle.process["consoleSize"] = {"height": 30, "width": 100}
    return bundle


def _console_session(runtime, bundle, sock, typed: bytes | None = None) -> bytes:
    cid = runtime.new_id()
    with ConsoleReceiver(sock) as recv:
        res = runtime.create(bundle, cid, "--console-socket", str(sock))
        assert res.ok, res
        recv.wait_for_fd()
        assert recv.message, "the runtime sent an empty message with the fd"
        runtime.check("start", cid)
        if typed is not None:
            recv.wait_for_output(b"ready")
            recv.write(typed)
        out = recv.wait_for_eof(10)
    assert runtime.wait_status(cid, "stopped") == "stopped"
    runtime.check("delete", cid)
    return out


def test_console_socket_receives_a_pty_with_the_containers_output(runtime, new_bundle, short_tmp):
    bundle = _terminal_bundle(new_bundle, "sh", "-c", "tty; stty size; ls /dev/console; echo done")
    out = _console_session(runtime, bundle, short_tmp / "cs.sock")
    lines = out.decode().split("\r\n")
    assert lines[0] == "/dev/pts/0", out
    assert lines[1] == "30 100", out
    assert lines[2] == "/dev/console", out
    assert "done" in lines


def test_typing_into_the_console_reaches_the_process(runtime, new_bundle, short_tmp):
    bundle = _terminal_bundle(new_bundle, "sh", "-c", "echo ready; read x; echo got:$x")
    out = _console_session(runtime, bundle, short_tmp / "cs.sock", typed=b"hello\n")
    assert b"got:hello" in out, out


def test_terminal_stdio_are_the_same_tty(runtime, new_bundle, short_tmp):
    bundle = _terminal_bundle(
        new_bundle, "sh", "-c", "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done"
    )
    out = _console_session(runtime, bundle, short_tmp / "cs.sock").decode()
    assert out.split() == ["/dev/pts/0"] * 3, out


def test_run_detached_with_console_socket(runtime, new_bundle, short_tmp):
    bundle = _terminal_bundle(new_bundle, "sh", "-c", "echo hi-from-tty; sleep 100")
    cid = runtime.new_id()
    with ConsoleReceiver(short_tmp / "cs.sock") as recv:
        res = runtime.run(bundle, cid, "-d", "--console-socket", str(short_tmp / "cs.sock"))
        assert res.ok, res
        assert b"hi-from-tty" in recv.wait_for_output(b"hi-from-tty")
        assert runtime.status(cid) == "running"
        runtime.check("kill", cid, "KILL")
        assert runtime.wait_status(cid, "stopped") == "stopped"


def test_create_with_terminal_and_no_console_socket_fails(runtime, new_bundle):
    res = runtime.create(_terminal_bundle(new_bundle, "true"))
    assert not res.ok, res
    assert "Traceback" not in res.stderr


def test_console_socket_without_terminal_fails(runtime, new_bundle, short_tmp):
    with ConsoleReceiver(short_tmp / "cs.sock"):
        res = runtime.create(new_bundle("true"), None, "--console-socket",
                             str(short_tmp / "cs.sock"))
    assert not res.ok, res
    time.sleep(0)
