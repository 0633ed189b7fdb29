"""json-file logs: docker's exact line format, partial lines, rotation, and reading back with
--tail, --since/--until and --follow (across rotations). A fake clock fixes every time."""

from __future__ import annotations

import calendar
import json
import os
import threading
import time
from pathlib import Path

import pytest

from hutch.engine.logs import (
    MAX_LINE,
    JsonFileLogger,
    LogEntry,
    format_entry,
    parse_time,
    read_logs,
)
from hutch.errors import InvalidArgument

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = calendar.timegm((2026, 11, 23, 10, 0, 0)) * NS  # 2026-11-23T10:00:00Z


class Clock:
    """Each reading is `step` ns after the previous one, starting at `now`."""

    def __init__(self, now: int = T0, step: int = NS) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> int:
        t = self.now
        self.now += self.step
        return t


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "c-json.log"


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def data(entries) -> list[bytes]:
    return [e.data for e in entries]


# --- the format ----------------------------------------------------------------------------


def test_a_line_is_written_byte_for_byte_as_dockerd_writes_it(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock(T0 + 123_456_789)) as lg:
        lg.write("stdout", b"hello\n")
    assert log.read_bytes() == (
        b'{"log":"hello\\n","stream":"stdout","time":"2026-11-23T10:00:00.123456789Z"}\n')


def test_keys_come_in_dockers_order_and_time_has_nine_fraction_digits(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock(T0 + 5_000)) as lg:
        lg.write("stderr", b"oops\n")
    obj = json.loads(lines_of(log)[0], object_pairs_hook=list)
    assert [k for k, _ in obj] == ["log", "stream", "time"]
    assert dict(obj) == {"log": "oops\n", "stream": "stderr",
                         "time": "2026-11-23T10:00:00.000005000Z"}


def test_escapes_are_gos_not_pythons(log: Path) -> None:
    # Go writes \t \b \f as \u00XX and escapes < > & and U+2028/2029; Python would not.
    raw = 'a\tb\x08c\x0cd\x01e<f>g&h"i\\j\rk\u2028l\u2029m é\n'.encode()
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", raw)
    line = lines_of(log)[0]
    assert line.startswith(
        b'{"log":"a\\u0009b\\u0008c\\u000cd\\u0001e\\u003cf\\u003eg\\u0026h\\"i\\\\j\\rk'
        b'\\u2028l\\u2029m \xc3\xa9\\n","stream":"stdout"')
    assert json.loads(line)["log"].encode() == raw


@pytest.mark.parametrize("char, escaped", [
    ("\t", b"\\u0009"), ("\x08", b"\\u0008"), ("\x0c", b"\\u000c"), ("\x1b", b"\\u001b"),
    ("<", b"\\u003c"), (">", b"\\u003e"), ("&", b"\\u0026"), ("\u2028", b"\\u2028"),
    ("\u2029", b"\\u2029"), ('"', b'\\"'), ("\\", b"\\\\"), ("\r", b"\\r"),
    ("\x7f", b"\x7f"), ("\u2014", "\u2014".encode()), ("\U0001f600", "\U0001f600".encode()),
])
def test_each_character_is_escaped_as_go_does(log: Path, char: str, escaped: bytes) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", f"a{char}b\n".encode())
    assert lines_of(log)[0].startswith(b'{"log":"a' + escaped + b'b\\n","stream"')


def test_lines_of_a_chunk_become_one_entry_each(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"one\ntwo\n\nthree\n")
    assert [json.loads(x)["log"] for x in lines_of(log)] == ["one\n", "two\n", "\n", "three\n"]


# --- partial lines -------------------------------------------------------------------------


def test_a_partial_line_waits_for_its_newline(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock())
    lg.write("stdout", b"abc")
    assert log.read_bytes() == b""
    lg.write("stdout", b"def\nghi")
    assert [json.loads(x)["log"] for x in lines_of(log)] == ["abcdef\n"]
    lg.close()


def test_partial_lines_are_kept_per_stream(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"out-")
        lg.write("stderr", b"err-")
        lg.write("stderr", b"line\n")
        lg.write("stdout", b"line\n")
    got = [(json.loads(x)["stream"], json.loads(x)["log"]) for x in lines_of(log)]
    assert got == [("stderr", "err-line\n"), ("stdout", "out-line\n")]


def test_flush_and_close_write_partials_without_a_newline(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock())
    lg.write("stdout", b"no newline")
    lg.flush()
    assert [json.loads(x)["log"] for x in lines_of(log)] == ["no newline"]
    lg.write("stderr", b"last words")
    lg.close()
    assert [json.loads(x)["log"] for x in lines_of(log)] == ["no newline", "last words"]


def test_a_partial_line_is_flushed_at_16k_like_docker(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock())
    lg.write("stdout", b"x" * (MAX_LINE - 1))
    assert log.read_bytes() == b""
    lg.write("stdout", b"yz")
    assert [json.loads(x)["log"] for x in lines_of(log)] == ["x" * (MAX_LINE - 1) + "y"]
    lg.write("stdout", b"\n")
    lg.close()
    assert [json.loads(x)["log"] for x in lines_of(log)][1:] == ["z\n"]
    assert MAX_LINE == 16 * 1024


def test_a_long_line_in_one_chunk_is_cut_into_16k_entries(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"a\n" + b"L" * 40000 + b"\nb\n" + b"E" * MAX_LINE + b"\n")
    logs = [json.loads(x)["log"] for x in lines_of(log)]
    assert logs == ["a\n", "L" * MAX_LINE, "L" * MAX_LINE, "L" * (40000 - 2 * MAX_LINE) + "\n",
                    "b\n", "E" * MAX_LINE, "\n"]


def test_invalid_utf8_becomes_u_fffd_per_byte_as_in_go(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"a\xffb\xe2\x82c\xed\xa0\x80d\n")
    line = lines_of(log)[0]
    assert line.startswith(b'{"log":"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffdd\\n"')
    assert data(read_logs(log)) == ["a\ufffdb\ufffd\ufffdc\ufffd\ufffd\ufffdd\n".encode()]


def test_a_character_split_across_reads_is_kept_whole(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"caf\xc3")
        lg.write("stdout", b"\xa9\n")
    assert data(read_logs(log)) == ["café\n".encode()]


def test_file_is_0640_and_appended_to(log: Path) -> None:
    old = os.umask(0o077)
    try:
        lg = JsonFileLogger(log, clock=Clock())
    finally:
        os.umask(old)
    assert log.stat().st_mode & 0o777 == 0o640
    lg.write("stdout", b"one\n")
    os.truncate(log, 0)  # without O_APPEND the next write would leave a hole of NULs
    lg.write("stdout", b"two\n")
    lg.close()
    assert log.read_bytes().startswith(b'{"log":"two\\n"')
    with JsonFileLogger(log, clock=Clock()) as again:  # a restarted monitor appends
        again.write("stdout", b"three\n")
    assert data(read_logs(log)) == [b"two\n", b"three\n"]


def test_unknown_stream_is_refused(log: Path) -> None:
    with JsonFileLogger(log) as lg, pytest.raises(ValueError):
        lg.write("stdin", b"x\n")


# --- rotation ------------------------------------------------------------------------------


def write_numbered(lg: JsonFileLogger, n: int, start: int = 0, per_write: int = 1) -> None:
    for i in range(start, start + n, per_write):
        lg.write("stdout", b"".join(b"line %05d\n" % j for j in range(i, min(i + per_write,
                                                                          start + n))))


def test_rotation_keeps_max_files_and_loses_nothing_in_between(log: Path) -> None:
    with JsonFileLogger(log, max_size=1000, max_files=3, clock=Clock()) as lg:
        write_numbered(lg, 60, per_write=7)  # chunks cross file boundaries
    names = sorted(p.name for p in log.parent.iterdir())
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for p in log.parent.iterdir():
        assert 0 < p.stat().st_size <= 1000
        assert p.read_bytes().endswith(b"}\n")  # rotation happens between entries
    got = data(read_logs(log))
    total = sum(len(lines_of(p)) for p in log.parent.iterdir())
    assert len(got) == total
    first = int(got[0].split()[1])
    assert got == [b"line %05d\n" % i for i in range(first, 60)]  # a contiguous, ordered tail


def test_max_files_one_truncates_in_place(log: Path) -> None:
    with JsonFileLogger(log, max_size=500, max_files=1, clock=Clock()) as lg:
        write_numbered(lg, 30)
    assert [p.name for p in log.parent.iterdir()] == ["c-json.log"]
    assert log.stat().st_size <= 500
    assert data(read_logs(log))[-1] == b"line 00029\n"


def test_max_size_zero_never_rotates(log: Path) -> None:
    with JsonFileLogger(log, max_size=0, clock=Clock()) as lg:
        write_numbered(lg, 5000, per_write=100)
    assert [p.name for p in log.parent.iterdir()] == ["c-json.log"]
    assert len(data(read_logs(log))) == 5000


def test_an_entry_larger_than_max_size_still_gets_written(log: Path) -> None:
    with JsonFileLogger(log, max_size=100, max_files=2, clock=Clock()) as lg:
        lg.write("stdout", b"s\n")
        lg.write("stdout", b"B" * 300 + b"\n")
    assert data(read_logs(log)) == [b"s\n", b"B" * 300 + b"\n"]


# --- reading -------------------------------------------------------------------------------


def test_a_missing_file_yields_nothing(tmp_path: Path) -> None:
    assert list(read_logs(tmp_path / "nope-json.log")) == []
    assert list(read_logs(tmp_path / "nope-json.log", follow=True)) == []


def test_entries_carry_time_stream_and_bytes(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock(T0, 7)) as lg:
        lg.write("stdout", b"o\n")
        lg.write("stderr", b"e\n")
    assert list(read_logs(log)) == [LogEntry(T0, "stdout", b"o\n"),
                                    LogEntry(T0 + 7, "stderr", b"e\n")]


def test_lines_written_by_dockerd_itself_are_read(log: Path) -> None:
    log.write_bytes(
        b'{"log":"a\\n","stream":"stdout","attrs":{"k":"v"},"time":"2026-11-23T10:00:00.5Z"}\n'
        b'{"stream":"stderr","log":"b\\u0009\\n","time":"2026-11-23T11:00:00+01:00"}\n'
        b'garbage that is not json\n')
    assert list(read_logs(log)) == [LogEntry(T0 + NS // 2, "stdout", b"a\n"),
                                    LogEntry(T0, "stderr", b"b\t\n")]


def test_a_torn_last_line_is_skipped_when_not_following(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock()) as lg:
        lg.write("stdout", b"whole\n")
    with open(log, "ab") as f:
        f.write(b'{"log":"half')
    assert data(read_logs(log)) == [b"whole\n"]
    assert data(read_logs(log, tail=1)) == [b"whole\n"]


def test_tail_counts_over_rotated_files(log: Path) -> None:
    with JsonFileLogger(log, max_size=300, max_files=5, clock=Clock()) as lg:
        write_numbered(lg, 20)
    current = len(lines_of(log))
    assert 0 < current < 5 and (log.parent / "c-json.log.2").exists()
    want = [b"line %05d\n" % i for i in range(20)]
    assert data(read_logs(log, tail=5)) == want[-5:]
    assert data(read_logs(log, tail=current + 4)) == want[-(current + 4):]
    assert data(read_logs(log, tail=10_000)) == data(read_logs(log))
    assert data(read_logs(log, tail=0)) == []


def test_since_is_inclusive_and_until_exclusive(log: Path) -> None:
    with JsonFileLogger(log, max_size=300, max_files=10, clock=Clock(T0, NS)) as lg:
        write_numbered(lg, 10)  # line i at T0 + i s
    got = data(read_logs(log, since_ns=T0 + 3 * NS, until_ns=T0 + 7 * NS))
    assert got == [b"line %05d\n" % i for i in range(3, 7)]
    assert data(read_logs(log, since_ns=T0 + 8 * NS)) == [b"line 00008\n", b"line 00009\n"]
    assert data(read_logs(log, until_ns=T0 + 2 * NS)) == [b"line 00000\n", b"line 00001\n"]


def test_tail_applies_to_the_entries_within_since_and_until(log: Path) -> None:
    with JsonFileLogger(log, max_size=300, max_files=10, clock=Clock(T0, NS)) as lg:
        write_numbered(lg, 10)
    assert data(read_logs(log, until_ns=T0 + 5 * NS, tail=2)) == [b"line 00003\n",
                                                                  b"line 00004\n"]
    assert data(read_logs(log, since_ns=T0 + 8 * NS, tail=5)) == [b"line 00008\n",
                                                                  b"line 00009\n"]


# --- following -----------------------------------------------------------------------------


class Hook:
    """A stop() that acts when the reader is idle: runs the next action (which may write),
    says "stop" once `stop_after` actions ran, and gives up after many calls so that a
    broken follow fails the test instead of hanging it."""

    def __init__(self, actions, stop_after: int | None = None) -> None:
        self.actions = list(actions)
        self.stop_after = len(self.actions) if stop_after is None else stop_after
        self.calls = 0
        self.ran = 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls > 500:
            return True
        if self.actions:
            self.actions.pop(0)()
            self.ran += 1
        return self.ran >= self.stop_after


def test_follow_reads_appended_lines_and_the_ones_written_as_it_stops(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock())
    lg.write("stdout", b"before\n")
    hook = Hook([lambda: lg.write("stdout", b"appended\n"),
                 lambda: lg.write("stderr", b"final words\n")])  # stop() is true from here
    got = list(read_logs(log, follow=True, stop=hook, poll_interval=0.001))
    lg.close()
    assert data(got) == [b"before\n", b"appended\n", b"final words\n"]
    assert hook.calls < 10


def test_follow_waits_for_the_rest_of_a_torn_line(log: Path) -> None:
    with JsonFileLogger(log, clock=Clock(T0 + 1)) as lg:
        lg.write("stdout", b"x\n")
    line = lines_of(log)[0]

    def append(part: bytes):
        def act() -> None:
            with open(log, "ab") as f:
                f.write(part)
        return act

    hook = Hook([append(line[:10]), append(line[10:])])
    got = list(read_logs(log, follow=True, stop=hook, poll_interval=0.001))
    assert got == [LogEntry(T0 + 1, "stdout", b"x\n")] * 2


def test_follow_continues_in_the_new_file_after_rotations(log: Path) -> None:
    lg = JsonFileLogger(log, max_size=400, max_files=2, clock=Clock())
    chunks = [b"".join(b"line %05d\n" % j for j in range(i, i + 3)) for i in range(0, 60, 3)]
    hook = Hook([lambda c=c: lg.write("stdout", c) for c in chunks])
    got = list(read_logs(log, follow=True, stop=hook, poll_interval=0.001))
    lg.close()
    assert (log.parent / "c-json.log.1").exists()
    assert data(got) == [b"line %05d\n" % i for i in range(60)]


def test_follow_survives_truncation_in_place(log: Path) -> None:
    lg = JsonFileLogger(log, max_size=300, max_files=1, clock=Clock())
    lg.write("stdout", b"line 1\nline 2\nline 3\n")
    hook = Hook([lambda: lg.write("stdout", b"after truncation\n")])
    got = list(read_logs(log, follow=True, stop=hook, poll_interval=0.001))
    lg.close()
    assert data(got) == [b"line 1\n", b"line 2\n", b"line 3\n", b"after truncation\n"]


def test_follow_with_tail_starts_from_the_last_entries(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock())
    write_numbered(lg, 5)
    hook = Hook([lambda: lg.write("stdout", b"new\n")])
    got = list(read_logs(log, tail=2, follow=True, stop=hook, poll_interval=0.001))
    lg.close()
    assert data(got) == [b"line 00003\n", b"line 00004\n", b"new\n"]


def test_follow_ends_at_until(log: Path) -> None:
    lg = JsonFileLogger(log, clock=Clock(T0, NS))
    hook = Hook([lambda: write_numbered(lg, 5)], stop_after=10**6)  # never says stop
    got = list(read_logs(log, until_ns=T0 + 2 * NS, follow=True, stop=hook,
                         poll_interval=0.001))
    lg.close()
    assert data(got) == [b"line 00000\n", b"line 00001\n"]
    assert hook.calls < 10


def test_follow_picks_up_a_file_created_later(log: Path) -> None:
    holder: list[JsonFileLogger] = []

    def create() -> None:
        holder.append(JsonFileLogger(log, clock=Clock()))
        holder[0].write("stdout", b"hello\n")

    hook = Hook([create, lambda: None])
    got = list(read_logs(log, follow=True, stop=hook, poll_interval=0.001))
    holder[0].close()
    assert data(got) == [b"hello\n"]


def test_follow_keeps_up_with_a_writer_thread_across_rotations(log: Path) -> None:
    # Writer and reader in lockstep: the writer waits until the reader has what it wrote,
    # so the test does not depend on timing, and each write may rotate the file.
    lg = JsonFileLogger(log, max_size=2000, max_files=3)
    seen: list[bytes] = []
    cond = threading.Condition()
    done = threading.Event()

    def writer() -> None:
        for i in range(0, 300, 5):
            lg.write("stdout", b"".join(b"line %05d\n" % j for j in range(i, i + 5)))
            with cond:
                cond.wait_for(lambda i=i: len(seen) >= i + 5, timeout=10)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 30
    try:
        for entry in read_logs(log, follow=True, poll_interval=0.001,
                               stop=lambda: done.is_set() or time.monotonic() > deadline):
            with cond:
                seen.append(entry.data)
                cond.notify_all()
    finally:
        t.join()
        lg.close()
    assert seen == [b"line %05d\n" % i for i in range(300)]
    assert (log.parent / "c-json.log.2").exists()


# --- --since / --until values --------------------------------------------------------------

NOW = T0 + 123


@pytest.mark.parametrize("text, want", [
    ("2026-11-23T10:00:00Z", T0),
    ("2026-11-23T10:00:00z", T0),
    ("2026-11-23T10:00:00.5Z", T0 + NS // 2),
    ("2026-11-23T10:00:00.123456789Z", T0 + 123_456_789),
    ("2026-11-23T10:00:00.1234567891234Z", T0 + 123_456_789),
    ("2026-11-23T11:30:00+01:30", T0),
    ("2026-11-23T05:00:00-05:00", T0),
    ("2026-11-23T10:30Z", T0 + 1800 * NS),
    ("2026-11-23T10Z", T0),
    ("2026-11-23Z", T0 - 10 * 3600 * NS),
    ("1700000000", 1_700_000_000 * NS),
    ("1700000000.123456789", 1_700_000_000 * NS + 123_456_789),
    ("1700000000.5", 1_700_000_000 * NS + NS // 2),
    ("0", 0),
    ("10m", NOW - 600 * NS),
    ("1h30m", NOW - 5400 * NS),
    ("90s", NOW - 90 * NS),
    ("1.5h", NOW - 5400 * NS),
    ("300ms", NOW - 300_000_000),
    ("2us", NOW - 2000),
    ("-1h", NOW + 3600 * NS),
])
def test_parse_time(text: str, want: int) -> None:
    assert parse_time(text, NOW) == want


def test_parse_time_without_a_zone_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # 2026-11-23 is in EST (UTC-5), 2026-07-01 in EDT (UTC-4).
        assert parse_time("2026-11-23T05:00:00", NOW) == T0
        assert parse_time("2026-11-23T05:00:00.25", NOW) == T0 + NS // 4
        assert parse_time("2026-11-23", NOW) == T0 - 5 * 3600 * NS
        july = calendar.timegm((2026, 7, 1, 4, 0, 0)) * NS
        assert parse_time("2026-07-01T00:00", NOW) == july
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "bogus", "10x", "1h-", "2026-13-01", "2026-02-30",
                                  "2026-11-23T25:00:00Z", "2026-11-23T10:00:00+25:00",
                                  "1700000000.", "1.2.3", "-5", "2026-11-23T10:00:00.Z"])
def test_parse_time_refuses_bad_values_in_one_line_naming_them(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_time(text, NOW)
    assert repr(text) in str(e.value) and "\n" not in str(e.value)


# --- output --------------------------------------------------------------------------------


def test_format_entry() -> None:
    entry = LogEntry(T0 + 1, "stderr", b"msg\n")
    assert format_entry(entry, False) == b"msg\n"
    assert format_entry(entry, True) == b"2026-11-23T10:00:00.000000001Z msg\n"
