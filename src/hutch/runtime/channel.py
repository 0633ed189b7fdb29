"""The parent/child sync channel: newline-delimited JSON messages over two pipes.

Pipes, not a socketpair: they cost nothing to import and both ends are plain fds that
survive fork. File descriptors (the pty master) never travel over this channel; they go
over the console socket with SCM_RIGHTS, exactly as runc sends them.
"""

from __future__ import annotations

import os

from hutch.errors import FailedPrecondition
from hutch.util import fastjson


class ChildGone(FailedPrecondition):
    """The other end closed the channel without a word (it died or exited)."""


class Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """(parent end, child end). All four fds are close-on-exec."""
        p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
        c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
        return cls(c2p_r, p2c_w), cls(p2c_r, c2p_w)

    def send(self, kind: str, **fields: object) -> None:
        data = fastjson.dumps({"t": kind, **fields}).encode() + b"\n"
        try:
            while data:
                n = os.write(self.wfd, data)
                data = data[n:]
        except BrokenPipeError:
            # The other side is gone: its last word (an error) may still be queued.
            msg = self._pending()
            if msg and msg.get("t") == "error":
                raise ChildError(msg.get("msg", "container init failed")) from None
            raise ChildGone("container init exited before finishing set-up") from None

    def _pending(self) -> dict | None:
        try:
            return self.recv()
        except (OSError, ValueError, ChildGone):
            return None

    def recv(self) -> dict:
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise ChildGone("container init exited before finishing set-up")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return fastjson.loads(line)

    def expect(self, kind: str) -> dict:
        msg = self.recv()
        if msg.get("t") == "error":
            raise ChildError(msg.get("msg", "container init failed"))
        if msg.get("t") != kind:
            raise FailedPrecondition(f"sync: expected {kind!r}, got {msg.get('t')!r}")
        return msg

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildError(FailedPrecondition):
    """The container's init reported an error during set-up."""
