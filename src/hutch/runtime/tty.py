"""`run` with process.terminal and no --console-socket: like runc, we take the pty master
ourselves and copy between it and our own stdio until the container's init exits.

Our terminal (when stdin is one) goes raw for the duration and its size is copied to the
container's pty, again on every SIGWINCH.
"""

from __future__ import annotations

import os
import select
import socket

from hutch.linux import libc

_TIOCGWINSZ = 0x5413
_TIOCSWINSZ = 0x5414


def console_pair() -> tuple[socket.socket, int]:
    """(our end, the fd to hand to the container's init as its console socket)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = theirs.detach()
    os.set_inheritable(fd, False)
    return ours, fd


def receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    if not fds:
        raise OSError(5, "no pty master received from the container")
    return fds[0]


def copy_size(master: int) -> None:
    import fcntl

    try:
        size = fcntl.ioctl(0, _TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, _TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master: int, pid: int) -> None:
    """Copy stdin -> master and master -> stdout until `pid` exits and the pty drains."""
    import _signal
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        copy_size(master)
        _signal.signal(_signal.SIGWINCH, lambda *_: copy_size(master))
    pidfd = libc.pidfd_open(pid)
    stdin_open = True
    try:
        while True:
            fds = [master, pidfd] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last slave fd closed
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    stdin_open = False
            if pidfd in ready and master not in ready:
                break
    finally:
        os.close(pidfd)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
