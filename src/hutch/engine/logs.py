"""docker's json-file log driver: the writer the container monitor feeds, the reader `logs` uses.

One JSON object per line, byte for byte what dockerd writes:

    {"log":"hello\\n","stream":"stdout","time":"2026-11-23T10:00:00.123456789Z"}

so tools that read docker's `*-json.log` files (promtail, fluent-bit, `jq`) read ours too.
Rotation follows docker's `max-size` / `max-file`: `path` is the live file, `path.1` the
previous one, up to `path.{max_files-1}`.

The writer runs inside the per-container monitor for the whole life of the container, so it
imports only builtins (`_json`, no `json`: that pulls in `re`) and encodes a whole chunk of
lines with a few C calls instead of a Python loop per line.
"""

from __future__ import annotations

import _json
import os
import time
from _thread import allocate_lock

from hutch.errors import InvalidArgument

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing (and re) costs ~14 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# docker's copier reads into a 16 KiB buffer and emits a full buffer without a newline as a
# partial message; long lines become several entries, all but the last without "\n".
MAX_LINE = 16 * 1024
_READ_BLOCK = 64 * 1024
_NS = 1_000_000_000

# --- JSON string escaping, exactly as docker's jsonlog.ffjsonWriteJSONBytesAsString -----------
# Go escapes \t \b \f as \u0009 \u0008 \u000c where Python writes \t \b \f, and also escapes
# < > & and U+2028/U+2029 (HTML safety). Each invalid UTF-8 byte becomes \ufffd (Go decodes a
# bad byte as RuneError of size 1): decoding with surrogateescape maps each such byte to one
# lone surrogate U+DC80..U+DCFF, which the table turns into the escape.
_ESCAPES: dict[int, str] = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\",
                 ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                 0x2028: "\\u2028", 0x2029: "\\u2029"})
_ESCAPES.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
# The slow path's table, with line breaks turned into the separator (see _encode_lines).
_SEP = "\ud800"  # a lone surrogate: never in strictly decoded text, nor in _ESCAPES' output
_ESCAPES_SPLIT = dict(_ESCAPES)
_ESCAPES_SPLIT[ord("\n")] = _SEP
# Bytes where Python's encoder and Go's differ; their absence allows the fast path.
_GO_ONLY = b"\t\b\f<>&"
_encode_basestring = _json.encode_basestring  # ensure_ascii=False, as Go keeps UTF-8 as is


def _escape_body(data: bytes) -> str:
    """`data` (may hold "\\n") as the inside of a JSON string, each "\\n" written as _SEP."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape").translate(_ESCAPES_SPLIT)
    if (len(data.translate(None, _GO_ONLY)) != len(data)
            or b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data):
        return text.translate(_ESCAPES_SPLIT)
    # The C encoder escapes everything else the way Go does; _SEP passes through unescaped.
    return _encode_basestring(text.replace("\n", _SEP))[1:-1]


def format_time(time_ns: int) -> str:
    """RFC3339Nano with always 9 fractional digits in UTC (Go's jsonmessage.RFC3339NanoFixed)."""
    secs, ns = divmod(time_ns, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


class JsonFileLogger:
    """Appends a container's output to `path` in docker's json-file format, rotating by size.

    Thread-safe (a reader thread per stream may call write()). Write errors (a full disk) do not
    raise: like dockerd, the logger drops the entry and keeps the container running; the
    count is in `dropped` and the error in `last_error`.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_size: int = 10 << 20,
                 max_files: int = 3, clock: Callable[[], int] = time.time_ns) -> None:
        if max_size < 0 or max_files < 1:
            raise InvalidArgument(f"invalid log options: max-size={max_size} max-file={max_files}")
        self.path = os.fspath(path)
        self.max_size = max_size
        self.max_files = max_files
        self.dropped = 0
        self.last_error: OSError | None = None
        self._clock = clock
        self._lock = allocate_lock()
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._sec = -1
        self._sec_text = ""
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.fchmod(fd, 0o640)  # whatever the umask was
        except OSError:
            os.close(fd)
            raise
        return fd

    def _timestamp(self) -> str:
        secs, ns = divmod(self._clock(), _NS)
        if secs != self._sec:  # strftime once a second, not once a line
            self._sec = secs
            self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        return f"{self._sec_text}.{ns:09d}Z"

    def write(self, stream: str, data: bytes) -> None:
        """Log a chunk read from the container's `stream` ("stdout" or "stderr")."""
        if stream not in self._partial:
            raise ValueError(f"unknown log stream {stream!r}")
        if not data:
            return
        with self._lock:
            pending = self._partial[stream]
            if pending:
                data = pending + data
            nl = data.rfind(b"\n")
            out: list[str] = []
            tail = ',"stream":"' + stream + '","time":"' + self._timestamp() + '"}\n'
            if nl >= 0:
                complete, data = data[:nl], data[nl + 1:]
                if len(complete) >= MAX_LINE and max(map(len, complete.split(b"\n"))) >= MAX_LINE:
                    for line in complete.split(b"\n"):
                        while len(line) >= MAX_LINE:
                            out.append('{"log":"' + _escape_body(line[:MAX_LINE]) + '"' + tail)
                            line = line[MAX_LINE:]
                        out.append('{"log":"' + _escape_body(line) + '\\n"' + tail)
                else:
                    # All lines at once: the separator between two lines' texts is the end of
                    # one entry and the start of the next.
                    out.append('{"log":"' + _escape_body(complete).replace(
                        _SEP, '\\n"' + tail + '{"log":"') + '\\n"' + tail)
            while len(data) >= MAX_LINE:
                out.append('{"log":"' + _escape_body(data[:MAX_LINE]) + '"' + tail)
                data = data[MAX_LINE:]
            self._partial[stream] = data
            if out:
                self._emit("".join(out).encode())

    def flush(self) -> None:
        """Write the buffered partial lines of both streams as entries without "\\n"."""
        with self._lock:
            out = []
            for stream, data in self._partial.items():
                if data:
                    out.append('{"log":"' + _escape_body(data) + '","stream":"' + stream
                               + '","time":"' + self._timestamp() + '"}\n')
                    self._partial[stream] = b""
            if out:
                self._emit("".join(out).encode())

    def close(self) -> None:
        """Flush partial lines and close the file. Idempotent."""
        if self._fd < 0:
            return
        self.flush()
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonFileLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- file and rotation ------------------------------------------------------------------

    def _emit(self, blob: bytes) -> None:
        if self.max_size and self._size + len(blob) > self.max_size:
            # Rotate between entries: each file stays within max_size unless a single entry
            # is larger (docker lets a file overshoot by one message instead).
            batch: list[bytes] = []
            batch_size = 0
            for line in blob.splitlines(keepends=True):  # JSON lines hold no raw line breaks
                if self._size + batch_size + len(line) > self.max_size and self._size + batch_size:
                    self._write_out(b"".join(batch))
                    batch, batch_size = [], 0
                    self._rotate()
                batch.append(line)
                batch_size += len(line)
            blob = b"".join(batch)
        self._write_out(blob)

    def _write_out(self, blob: bytes) -> None:
        if not blob:
            return
        view = memoryview(blob)
        try:
            while view:
                n = os.write(self._fd, view)
                self._size += n
                view = view[n:]
        except OSError as e:
            self.dropped += 1
            self.last_error = e

    def _rotate(self) -> None:
        try:
            if self.max_files == 1:
                os.ftruncate(self._fd, 0)  # O_APPEND: the next write lands at offset 0
                self._size = 0
                return
            for n in range(self.max_files - 1, 1, -1):
                try:
                    os.rename(f"{self.path}.{n - 1}", f"{self.path}.{n}")
                except FileNotFoundError:
                    pass
            os.rename(self.path, self.path + ".1")
            fd = self._open()
        except OSError as e:  # keep writing to the file we have
            self.last_error = e
            return
        os.close(self._fd)
        self._fd = fd
        self._size = 0


# --- reading ------------------------------------------------------------------------------


class LogEntry:
    """One log entry: when it was read from the container, from which stream, the bytes."""

    __slots__ = ("time_ns", "stream", "data")

    def __init__(self, time_ns: int, stream: str, data: bytes) -> None:
        self.time_ns = time_ns
        self.stream = stream
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogEntry):
            return NotImplemented
        return (self.time_ns, self.stream, self.data) == (other.time_ns, other.stream, other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LogEntry(time_ns={self.time_ns}, stream={self.stream!r}, data={self.data!r})"


def format_entry(entry: LogEntry, timestamps: bool) -> bytes:
    """The bytes `docker logs` prints for an entry; `-t` puts the time and a space in front."""
    if timestamps:
        return format_time(entry.time_ns).encode() + b" " + entry.data
    return entry.data


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


class _Parser:
    """Turns json-file lines into entries; caches the seconds of the last time it saw."""

    def __init__(self) -> None:
        self._prefix = ""
        self._secs = 0

    def time(self, text: str) -> int:
        # Our own (and dockerd's) format: 2026-11-23T10:00:00.123456789Z
        if len(text) == 30 and text[19] == "." and text[29] == "Z":
            prefix = text[:19]
            if prefix != self._prefix:
                secs = _rfc3339_seconds(prefix)
                if secs is None:
                    raise ValueError(text)
                self._prefix, self._secs = prefix, secs
            return self._secs * _NS + int(text[20:29])
        t = _parse_rfc3339(text, local_ok=False)
        if t is None:
            raise ValueError(text)
        return t

    def entry(self, line: bytes) -> LogEntry | None:
        """None for a line that is not a log entry (a corrupt or foreign line is skipped)."""
        try:
            s = line.decode()
            if s.startswith('{"log":"'):
                log, end = _json.scanstring(s, 8)
                rest = s[end:]
                if rest.startswith(',"stream":"std') and rest[17:27] == '","time":"' \
                        and rest.endswith('"}'):
                    return LogEntry(self.time(rest[27:-2]), rest[11:17], log.encode())
            from hutch.util import fastjson

            obj = fastjson.loads(s)
            return LogEntry(self.time(obj["time"]), obj.get("stream") or "stdout",
                            obj["log"].encode())
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _rotated_names(path: str) -> list[str]:
    """path.N files, oldest (highest N) first."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    prefix = base + "."
    numbers = [int(n[len(prefix):]) for n in names
               if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return [f"{path}.{n}" for n in sorted(numbers, reverse=True) if n > 0]


def _open_files(path: str) -> tuple[list[int], int, int]:
    """Open the rotated files and the current one as one consistent set.

    Returns (fds oldest first, index of the current file's fd or -1, its inode). A rotation
    between listing and opening would show the same entries twice or miss a file: re-check
    that every name still names the inode opened, and start over if not.
    """
    fds: list[int] = []
    for _ in range(10):
        for fd in fds:
            os.close(fd)
        fds, inodes = [], []
        names = [*_rotated_names(path), path]
        try:
            for name in names:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    if name != path:
                        raise
                    break
                fds.append(fd)
                inodes.append(os.fstat(fd).st_ino)
            if all(os.stat(n).st_ino == ino for n, ino in zip(names, inodes, strict=False)):
                break
        except FileNotFoundError:
            continue
    current = len(fds) - 1 if len(fds) == len(names) else -1
    return fds, current, (os.fstat(fds[current]).st_ino if current >= 0 else 0)


def _complete_end(fd: int) -> int:
    """Offset just past the last "\\n" of the file: a torn last line is not read."""
    end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - _READ_BLOCK)
        i = os.pread(fd, end - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _lines_forward(fd: int, pos: int, end: int | None) -> Iterator[tuple[bytes, int]]:
    """(line, offset after it) for each complete line from pos (to end, or to EOF)."""
    rest = b""
    start = pos  # offset of rest[0]
    while end is None or pos < end:
        size = _READ_BLOCK * 16 if end is None else min(_READ_BLOCK * 16, end - pos)
        block = os.pread(fd, size, pos)
        if not block:
            return
        pos += len(block)
        lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
        rest = lines.pop()
        for line in lines:
            start += len(line) + 1
            if line:
                yield line, start


def _lines_backward(fd: int, end: int) -> Iterator[bytes]:
    """Complete lines before `end` (which follows a "\\n"), last first."""
    rest = b""
    while end > 0:
        start = max(0, end - _READ_BLOCK)
        lines = (os.pread(fd, end - start, start) + rest).split(b"\n")
        end = start
        rest = lines[0] if end else b""
        for line in reversed(lines if not end else lines[1:]):
            if line:
                yield line


def _tail(parser: _Parser, fds: list[int], ends: list[int | None], tail: int,
          since_ns: int | None, until_ns: int | None) -> list[LogEntry]:
    """The last `tail` entries within [since, until), newest first, reading files backward."""
    found: list[LogEntry] = []
    if tail <= 0:
        return found
    for fd, end in zip(reversed(fds), reversed(ends), strict=True):
        for line in _lines_backward(fd, _complete_end(fd) if end is None else end):
            e = parser.entry(line)
            if e is None or (until_ns is not None and e.time_ns >= until_ns):
                continue
            if since_ns is not None and e.time_ns < since_ns:
                return found  # entries are in time order: only older ones before this
            found.append(e)
            if len(found) >= tail:
                return found
    return found


def read_logs(path: str | os.PathLike[str], *, since_ns: int | None = None,
              until_ns: int | None = None, tail: int | None = None, follow: bool = False,
              stop: Callable[[], bool] = lambda: True,
              poll_interval: float = 0.1) -> Iterator[LogEntry]:
    """Entries of the log at `path`, rotated files first, as `docker logs` shows them.

    since_ns is inclusive, until_ns exclusive; `tail` keeps the last N entries (after the
    time filter). With `follow`, keeps reading what is appended, across rotations, until
    stop() is true and everything written has been read; a torn last line is waited for
    while following and skipped otherwise. A missing file yields nothing (or, following,
    is waited for).
    """
    path = os.fspath(path)
    parser = _Parser()
    fds, current, inode = _open_files(path)
    try:
        pos = 0
        if current >= 0:
            pos = _complete_end(fds[current])
        ends = [None if i != current else pos for i in range(len(fds))]
        if tail is not None:
            found = _tail(parser, fds, ends, tail, since_ns, until_ns)
            yield from reversed(found)
        else:
            for fd, end in zip(fds, ends, strict=True):
                for line, _ in _lines_forward(fd, 0, end):
                    e = parser.entry(line)
                    if e is None or (since_ns is not None and e.time_ns < since_ns):
                        continue
                    if until_ns is not None and e.time_ns >= until_ns:
                        return
                    yield e
        if not follow:
            return
        fd = fds[current] if current >= 0 else -1
        draining = False
        while True:
            # stat before reading: if the file was replaced by then, the writer had finished
            # with the old one, and reading the old one to its end below gets all of it.
            try:
                replaced = os.stat(path).st_ino != inode
            except FileNotFoundError:  # between rename and create, or not created yet
                replaced = False
            progressed = False
            if fd >= 0:
                if os.fstat(fd).st_size < pos:  # truncated in place (max-file=1)
                    pos = 0
                for line, after in _lines_forward(fd, pos, None):
                    pos = after
                    progressed = True
                    e = parser.entry(line)
                    if e is None or (since_ns is not None and e.time_ns < since_ns):
                        continue
                    if until_ns is not None and e.time_ns >= until_ns:
                        return
                    yield e
            if replaced:
                try:
                    new = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    new = -1
                if new >= 0:
                    if fd >= 0:
                        fds.remove(fd)
                        os.close(fd)
                    fd, pos, inode = new, 0, os.fstat(new).st_ino
                    fds.append(fd)
                    progressed = True
            if progressed:
                continue
            if draining:
                return
            if stop() or (until_ns is not None and time.time_ns() >= until_ns):
                draining = True  # one more pass: lines written just before stop() turned true
                continue
            time.sleep(poll_interval)
    finally:
        for fd in fds:
            os.close(fd)


# --- --since / --until values -------------------------------------------------------------

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": _NS,
             "m": 60 * _NS, "h": 3600 * _NS}


def _rfc3339_seconds(text: str) -> int | None:
    """UTC seconds of 'YYYY-MM-DDTHH:MM:SS' (validated), or None."""
    try:
        if len(text) != 19 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt" \
                or text[13] != ":" or text[16] != ":":
            return None
        y, mo, d = int(text[:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        return None
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def _parse_rfc3339(text: str, *, local_ok: bool) -> int | None:
    """ns of an RFC3339 time, a shortened one (docker accepts 'T15', 'T15:04') or a date,
    with 'Z' or '±hh:mm' as zone; without one, local time when local_ok. None if not one."""
    import re
    from datetime import UTC, datetime, timedelta, timezone

    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
                     r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?", text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, z, sign, zh, zm = m.groups()
    if frac is not None and s is None:
        return None
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    ns = int((frac or "0")[:9].ljust(9, "0"))
    if z is None and sign is None:
        if not local_ok:
            return None
        return int(dt.timestamp()) * _NS + ns  # naive datetime: local time, DST included
    offset = timedelta(0)
    if sign is not None:
        if int(zh) > 23 or int(zm) > 59:
            return None
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (1 if sign == "+" else -1)
    aware = dt.replace(tzinfo=timezone(offset))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (aware - epoch) // timedelta(seconds=1) * _NS + ns


def _parse_duration(text: str) -> int | None:
    """ns of a Go duration ('1h30m', '1.5h', '300ms', '-2m'); None if not one. '0' is not
    taken as a duration (docker reads it as the Unix time 0)."""
    import re

    m = re.fullmatch(r"([+-]?)((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)", text)
    if m is None:
        return None
    total = 0
    for whole, frac, unit in re.findall(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)", m.group(2)):
        scale = _UNITS_NS[unit]
        total += int(whole or 0) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    return -total if m.group(1) == "-" else total


def parse_time(text: str, now_ns: int) -> int:
    """A `--since`/`--until` value as Unix ns, read the way docker reads it.

    RFC3339 with or without fraction and zone (no zone: local time), a date, a Unix time
    'SECONDS[.FRACTION]', or a Go duration meaning that long before `now_ns`.
    """
    value = text.strip()
    d = _parse_duration(value)
    if d is not None:
        return now_ns - d
    t = _parse_rfc3339(value, local_ok=True) if "-" in value[1:] else None
    if t is not None:
        return t
    secs, dot, frac = value.partition(".")
    if secs.isdigit() and secs.isascii() and (not dot or (frac.isdigit() and frac.isascii())):
        return int(secs) * _NS + int(frac[:9].ljust(9, "0") if frac else 0)
    raise InvalidArgument(
        f"invalid time value {text!r}: expected RFC3339 (2026-11-23T10:00:00Z), a date, "
        "a Unix timestamp or a duration (10m, 1h30m)")
