"""OCI hooks (runtime-spec config.md#posix-platform-hooks).

When each kind runs, and where:
  prestart, createRuntime  - runtime namespace, after the namespaces and mounts exist,
                             before pivot_root (parent side of `create`)
  createContainer          - container namespace, before pivot_root (in init)
  startContainer           - container namespace, after `start`, before the user process
                             is executed (in init; its path resolves in the container)
  poststart                - runtime namespace, after the user process started (`start`)
  poststop                 - runtime namespace, after the container is deleted (`delete`)
A failing prestart/createRuntime/createContainer/startContainer hook fails the container;
a failing poststart/poststop hook is only logged (the spec says "log a warning").
Each hook gets the state JSON on stdin.
"""

from __future__ import annotations

from hutch.errors import FailedPrecondition
from hutch.util import fastjson

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


class HookError(FailedPrecondition):
    pass


def run_hooks(kind: str, hooks: list[dict] | None, state: dict) -> list[str]:
    """Run `hooks` in order; raise HookError for a fatal kind, else return warnings."""
    warnings: list[str] = []
    if not hooks:
        return warnings
    import subprocess  # lazily: most containers have no hooks

    data = fastjson.dumps(state).encode()
    for h in hooks:
        path = h["path"]
        args = h.get("args") or [path]
        env = {}
        for kv in h.get("env") or ():
            k, _, v = kv.partition("=")
            env[k] = v
        timeout = h.get("timeout")
        try:
            proc = subprocess.run(
                args, executable=path, input=data, env=env, timeout=timeout,
                capture_output=True, close_fds=True,
            )
            if proc.returncode != 0:
                msg = (f"{kind} hook {path} failed with exit status {proc.returncode}: "
                       f"{proc.stderr.decode(errors='replace').strip()}")
            else:
                continue
        except subprocess.TimeoutExpired:
            msg = f"{kind} hook {path} timed out after {timeout}s"
        except OSError as e:
            msg = f"{kind} hook {path}: {e.strerror}"
        if kind in FATAL:
            raise HookError(msg, kind=kind, path=path)
        warnings.append(msg)
    return warnings


