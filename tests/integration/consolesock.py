"""A console-socket receiver, like runc's contrib/cmd/recvtty.

With ``process.terminal: true`` and ``--console-socket PATH`` an OCI runtime connects to
the unix socket at PATH and sends the pty master as one fd by SCM_RIGHTS (runc sends the
pty's name, e.g. "/dev/ptmx", as the message body). The receiver then owns the terminal:
it reads what the container writes and can type into it.
"""

from __future__ import annotations

import array
import os
import select
import socket
import threading
import time
from pathlib import Path


class ConsoleReceiver:
    """Listen on ``path``; accept one connection; keep the received pty master fd.

    The accept and the read loop run in a daemon thread so the runtime (``create`` or
    ``run -d``) can connect while the test waits on the runtime's exit.
    """

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.master_fd: int | None = None
        self.message: bytes = b""
        self.error: BaseException | None = None
        self._output = bytearray()
        self._lock = threading.Lock()
        self._got_fd = threading.Event()
        self._eof = threading.Event()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(1)
        self._sock.settimeout(timeout)
        self._thread = threading.Thread(target=self._serve, name="console-receiver", daemon=True)
        self._thread.start()

    # -- receiving ---------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
            with conn:
                fds = array.array("i")
                msg, ancdata, _flags, _addr = conn.recvmsg(
                    4096, socket.CMSG_SPACE(4 * fds.itemsize)
                )
                self.message = msg
                for level, ctype, data in ancdata:
                    if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                        usable = len(data) - (len(data) % fds.itemsize)
                        fds.frombytes(data[:usable])
                if not fds:
                    raise RuntimeError(f"no fd received on console socket (message {msg!r})")
                for extra in fds[1:]:
                    os.close(extra)
                self.master_fd = fds[0]
            self._got_fd.set()
            self._read_loop()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
            self._got_fd.set()
            self._eof.set()

    def _read_loop(self) -> None:
        assert self.master_fd is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master_fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master_fd, 65536)
            except OSError:  # EIO: every slave fd closed (the container exited)
                break
            if not chunk:
                break
            with self._lock:
                self._output.extend(chunk)
        self._eof.set()

    # -- test API ----------------------------------------------------------------------
    def wait_for_fd(self, timeout: float | None = None) -> int:
        if not self._got_fd.wait(timeout or self.timeout):
            raise TimeoutError(f"no connection on console socket {self.path}")
        if self.error is not None:
            raise self.error
        assert self.master_fd is not None
        return self.master_fd

    def write(self, data: bytes) -> None:
        os.write(self.wait_for_fd(), data)

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for_output(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output:
                return self.output
            if self._eof.is_set():
                break
            time.sleep(0.02)
        return self.output

    def wait_for_eof(self, timeout: float = 10.0) -> bytes:
        self._eof.wait(timeout)
        return self.output

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)
        if self.master_fd is not None:
            try:
                os.close(self.master_fd)
            except OSError:
                pass
            self.master_fd = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> ConsoleReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
