"""Helpers shared by the container verbs: error mapping, attach, per-container loops."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class ExitCode(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextmanager
def engine_errors():
    """run/create/start/exec: docker's codes — an engine error is 125 (not 1), a
    container that cannot be invoked 126, a command not found 127."""
    from hutch.errors import HutchError

    try:
        yield
    except HutchError as e:
        if getattr(e, "exit_code", None) is None:
            e.exit_code = 125
        raise


def each(refs, fn, settings, *, print_ref: bool = True) -> int:
    """docker's loop over containers: act on each, print its name as given, report the
    failures one line each on stderr, exit 1 if any failed."""
    from hutch.engine.containers import Engine
    from hutch.errors import HutchError

    failed = 0
    with Engine(settings) as eng:
        for ref in refs:
            try:
                out = fn(eng, eng.get(ref))
            except HutchError as e:
                sys.stderr.write(f"Error: {e}\n")
                failed += 1
                continue
            if print_ref:
                print(ref if out is None else out)
    return 1 if failed else 0


def start_or_cleanup(eng, rec, auto_remove: bool, attach=None, console_size=None,
                     early=None):
    """Start; if the start fails and the container was --rm, remove it (docker does)."""
    from hutch.errors import HutchError

    try:
        return eng.start(rec, attach=attach, console_size=console_size, early=early)
    except HutchError:
        if auto_remove:
            try:
                eng.remove(rec.id, force=True, volumes=True)
            except HutchError:
                pass
        raise


class AttachLink:
    """The socketpair between `run`/`start -a` and the container's monitor, and the
    terminal size the container's pty starts with."""

    def __init__(self, tty: bool) -> None:
        # _socket, not socket: the module's enums and selectors cost ~2 ms to import, and
        # these two only ever send, receive and close (close-on-exec, as socket's are).
        import _socket

        from hutch.engine import attach as proto

        self.ours, self.theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.tty = tty
        self.size = proto.terminal_size() if tty else None

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


def attach_and_wait(eng, rec, args, *, start: bool, link: AttachLink | None = None,
                    early=None) -> int:
    """Attach our stdio to the container (starting it with a socketpair so no output is
    lost), return its exit code; 0 after a detach (ctrl-p ctrl-q). `link` and `early`:
    made before the container was (see run)."""
    from hutch.engine import attach as proto

    if link is None:
        link = AttachLink(bool(rec.config.get("run", {}).get("tty")))
    interactive = bool(getattr(args, "interactive", False))
    keys = proto.parse_detach_keys(getattr(args, "detach_keys", None)
                                   or proto.DEFAULT_DETACH_KEYS)
    try:
        if start:
            start_or_cleanup(eng, rec, bool(rec.config.get("auto_remove")),
                             attach=link.theirs, console_size=link.size, early=early)
        else:
            link.theirs.close()
        try:
            code = proto.run_client(link.ours, stdin=interactive, tty=link.tty,
                                    detach_keys=keys,
                                    sig_proxy=getattr(args, "sig_proxy", "true") != "false")
        except proto.Detached:
            return 0
    finally:
        link.close()
    if code is not None:
        return code
    # The monitor went away without a word: the record (reconciled) knows the rest.
    from hutch.errors import NotFound

    try:
        rec = eng.wait_stopped(eng.get(rec.id), None)
    except NotFound:
        return 0
    return rec.exit_code
