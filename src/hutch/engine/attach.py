"""The attach protocol between a container's monitor and the hutch commands attached to it.

A stream socket carrying frames in docker's stdcopy layout: one byte of stream type,
three zero bytes, a big-endian uint32 payload size, the payload. Docker's types 0/1/2 are
stdin/stdout/stderr; hutch adds control frames:

  client -> monitor   STDIN data, STDIN_EOF, RESIZE "rows cols", SIGNAL "signum"
  monitor -> client   STDOUT data, STDERR data, EXIT {"code": N, "oom": bool}

`hutch run` (attached) and `start -a` get their socket from a socketpair made before the
monitor exists, so not a byte of output is missed; `hutch attach` connects to the
monitor's attach.sock later. The monitor sends EXIT after the container's last output
(and, with --rm, after the container is gone), then closes.
"""

from __future__ import annotations

import os
import select
import struct

TYPE_CHECKING = False  # the socket module costs ~2 ms to import: the CLI makes its end
if TYPE_CHECKING:      # with _socket (AttachLink), the monitor imports socket itself
    import socket

STDIN, STDOUT, STDERR, STDIN_EOF, RESIZE, SIGNAL, EXIT = 0, 1, 2, 3, 4, 5, 6
_HEADER = struct.Struct(">B3xI")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 1 << 20
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def _short_path(path: str, op):
    """sun_path holds 108 bytes; {run}/containers/<64 hex>/attach.sock can be longer.
    Go through an O_PATH fd of the directory: /proc/self/fd/N/attach.sock is short."""
    if len(os.fsencode(path)) < 100:
        return op(path)
    d, name = os.path.split(path)
    fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return op(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


def bind_unix(sock: socket.socket, path: str) -> None:
    _short_path(path, sock.bind)


def connect_unix(sock: socket.socket, path: str) -> None:
    _short_path(path, sock.connect)


def frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Accumulates bytes from a socket and yields whole frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= HEADER_SIZE:
            kind, size = _HEADER.unpack_from(self.buf)
            if size > MAX_FRAME:
                raise ValueError(f"attach frame of {size} bytes")
            if len(self.buf) < HEADER_SIZE + size:
                break
            out.append((kind, bytes(self.buf[HEADER_SIZE:HEADER_SIZE + size])))
            del self.buf[:HEADER_SIZE + size]
        return out


def parse_detach_keys(text: str) -> bytes:
    """docker's --detach-keys: comma-separated "ctrl-<x>" or single characters."""
    from hutch.errors import InvalidArgument

    out = bytearray()
    for part in text.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"invalid detach keys: {text!r}")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidArgument(f"invalid detach keys: {text!r}")
    return bytes(out)


class Detached(Exception):
    pass


def terminal_size() -> tuple[int, int] | None:
    """(rows, cols) of our stdin's terminal, or None."""
    size = _winsize()
    if not size:
        return None
    rows, cols = (int(x) for x in size.split())
    return (rows, cols) if rows and cols else None


def _winsize() -> bytes | None:
    import fcntl
    import termios

    try:
        raw = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = struct.unpack("HHHH", raw)[:2]
    return f"{rows} {cols}".encode()


def run_client(sock: socket.socket, *, stdin: bool, tty: bool,
               detach_keys: bytes | None = None, sig_proxy: bool = True) -> int | None:
    """Copy frames to our stdout/stderr and our stdin to the container until the monitor
    says EXIT (return its code) or goes away (None). With a tty our terminal goes raw
    and `detach_keys` typed in a row detach (raises Detached)."""
    import _signal

    saved_term = None
    reader = FrameReader()
    stdin_open = stdin
    pending = b""  # a detach-key prefix held back
    old_handlers: dict[int, object] = {}

    def send(kind: int, payload: bytes = b"") -> None:
        try:
            sock.sendall(frame(kind, payload))
        except OSError:
            pass

    if tty and os.isatty(0):
        import termios
        import tty as _tty

        saved_term = termios.tcgetattr(0)
        _tty.setraw(0)
    if tty:
        size = _winsize()
        if size:
            send(RESIZE, size)
        old_handlers[_signal.SIGWINCH] = _signal.signal(
            _signal.SIGWINCH, lambda *_: (lambda s: s and send(RESIZE, s))(_winsize()))
    if sig_proxy and not tty:
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
                  _signal.SIGUSR1, _signal.SIGUSR2):
            try:
                old_handlers[s] = _signal.signal(
                    s, lambda signum, _f: send(SIGNAL, str(signum).encode()))
            except (OSError, ValueError):
                pass
    try:
        while True:
            fds = [sock.fileno()] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if sock.fileno() in ready:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return None
                for kind, payload in reader.feed(data):
                    if kind == STDOUT:
                        _write_all(1, payload)
                    elif kind == STDERR:
                        _write_all(2, payload)
                    elif kind == EXIT:
                        from hutch.util import fastjson  # json: ~1.5 ms more, at the end

                        return int(fastjson.loads(payload or b"{}").get("code", 0))
            if stdin_open and 0 in ready:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    data = b""
                if not data:
                    stdin_open = False
                    send(STDIN_EOF)
                    continue
                if detach_keys and tty:
                    data = pending + data
                    pending = b""
                    idx = data.find(detach_keys)
                    if idx >= 0:
                        if idx:
                            send(STDIN, data[:idx])
                        raise Detached()
                    for n in range(min(len(detach_keys) - 1, len(data)), 0, -1):
                        if data.endswith(detach_keys[:n]):
                            pending, data = data[-n:], data[:-n]
                            break
                if data:
                    send(STDIN, data)
    finally:
        for s, old in old_handlers.items():
            try:
                _signal.signal(s, old)
            except (OSError, ValueError, TypeError):
                pass
        if saved_term is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_term)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        view = view[n:]
