"""The host's `ps`, cut down to a container's processes (runc ps, docker top)."""

from __future__ import annotations

from hutch.errors import FailedPrecondition


def host_ps_lines(pids, ps_args: list[str] | None) -> list[str]:
    """Run `ps ARGS` (default -ef) on the host; its header and the rows whose PID column
    is one of `pids`. FailedPrecondition if ps fails or prints no PID column."""
    import subprocess

    args = list(ps_args or ["-ef"])
    out = subprocess.run(["ps", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise FailedPrecondition(f"ps {' '.join(args)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split()
    if "PID" not in header:
        raise FailedPrecondition("couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    rows = [line for line in lines[1:]
            if len(line.split()) > col and line.split()[col] in wanted]
    return [lines[0], *rows]
