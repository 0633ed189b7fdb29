"""hutch: the docker-like CLI. One module per verb under hutch.cli, imported only when
that verb runs; each has `add_arguments(parser)` and `run(args, settings) -> int`.

Exit codes follow docker's: a bad flag or an engine error is 125; a verb that fails on
its object (no such image, refused push) is 1 unless the verb says otherwise; `run`
passes the container's own code through, 126 when it cannot be invoked, 127 when not
found. Errors are one line on stderr (plus a hint), never a traceback; --debug shows it.
"""

from __future__ import annotations

import sys

# verb -> (module, one-line help). Aliases point at the same module.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run", "Create and run a new container from an image"),
    "create": ("create", "Create a new container"),
    "start": ("start", "Start one or more stopped containers"),
    "stop": ("stop", "Stop one or more running containers"),
    "kill": ("kill", "Kill one or more running containers"),
    "restart": ("restart", "Restart one or more containers"),
    "rm": ("rm", "Remove one or more containers"),
    "ps": ("ps", "List containers"),
    "logs": ("logs", "Fetch the logs of a container"),
    "exec": ("exec_", "Execute a command in a running container"),
    "attach": ("attach", "Attach to a running container's output (and input)"),
    "inspect": ("inspect", "Return low-level information on containers or images"),
    "top": ("top", "Display the running processes of a container"),
    "stats": ("stats", "Display containers' resource usage"),
    "update": ("update", "Update the resource limits of containers"),
    "wait": ("wait", "Block until containers stop, then print their exit codes"),
    "port": ("port", "List port mappings of a container"),
    "cp": ("cp", "Copy files between a container and the host"),
    "diff": ("diff", "Inspect changes to files on a container's filesystem"),
    "commit": ("commit", "Create a new image from a container's changes"),
    "pause": ("pause", "Pause all processes within containers"),
    "unpause": ("unpause", "Unpause all processes within containers"),
    "rename": ("rename", "Rename a container"),
    "info": ("info", "Display system-wide information"),
    "version": ("version", "Show the hutch version"),
    "pull": ("pull", "Pull an image from a registry"),
    "push": ("push", "Push an image to a registry"),
    "images": ("images", "List images"),
    "tag": ("tag", "Create a tag TARGET that refers to SOURCE"),
    "rmi": ("rmi", "Remove one or more images"),
    "save": ("save", "Save images to a tar archive"),
    "load": ("load", "Load images from a tar archive"),
    "import": ("import_", "Import a rootfs tarball or directory as an image"),
    "login": ("login", "Log in to a registry"),
    "logout": ("logout", "Log out from a registry"),
}
# `hutch GROUP SUBVERB`: group -> (subverb -> module, one-line help of the group).
GROUPS: dict[str, tuple[dict[str, str], str]] = {
    "image": ({
        "inspect": "image_inspect", "prune": "image_prune", "ls": "images", "rm": "rmi",
        "pull": "pull", "push": "push", "tag": "tag", "save": "save", "load": "load",
        "import": "import_",
    }, "Manage images"),
    "container": ({
        "run": "run", "create": "create", "start": "start", "stop": "stop", "kill": "kill",
        "restart": "restart", "rm": "rm", "ls": "ps", "ps": "ps", "logs": "logs",
        "exec": "exec_", "attach": "attach", "inspect": "inspect", "top": "top",
        "stats": "stats", "update": "update", "wait": "wait", "port": "port", "cp": "cp",
        "diff": "diff", "commit": "commit", "pause": "pause", "unpause": "unpause",
        "rename": "rename", "prune": "container_prune",
    }, "Manage containers"),
    "volume": ({
        "create": "volume_create", "ls": "volume_ls", "inspect": "volume_inspect",
        "rm": "volume_rm", "prune": "volume_prune",
    }, "Manage volumes"),
    "network": ({
        "create": "network_create", "ls": "network_ls", "list": "network_ls",
        "inspect": "network_inspect", "rm": "network_rm", "remove": "network_rm",
        "connect": "network_connect", "disconnect": "network_disconnect",
        "prune": "network_prune",
    }, "Manage networks"),
    "system": ({"df": "system_df", "info": "info", "prune": "system_prune"}, "Manage hutch"),
}
IMAGE_SUBVERBS = GROUPS["image"][0]


class UsageError(Exception):
    pass


def _parser(prog: str, help_text: str):
    import argparse

    # argparse passes its own messages through gettext, which looks for translation
    # catalogs on every call (the locale module and ~60 stat calls for one `run` parser)
    # and finds none: Python ships no catalogs for them.
    argparse._ = _untranslated
    argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural

    class _Formatter(argparse.HelpFormatter):
        # argparse makes a formatter per add_argument() to check the metavar, and each
        # asks shutil for the terminal's width (importing shutil, bz2 and lzma the
        # first time): ask once.
        def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
            super().__init__(prog, indent_increment, max_help_position,
                             width or _help_width())

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, docker's exit code for bad flags
            raise UsageError(f"{self.prog}: {message}")

    return _Parser(prog=prog, description=help_text, formatter_class=_Formatter)


def _untranslated(message: str) -> str:
    return message


_width: list[int] = []


def _help_width() -> int:
    """shutil.get_terminal_size()'s answer (COLUMNS, else stdout's size, else 80), less
    the 2 columns argparse leaves."""
    if not _width:
        import os

        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (AttributeError, ValueError, OSError):
                columns = 0
        _width.append((columns or 80) - 2)
    return _width[0]


def _usage() -> str:
    lines = ["usage: hutch [--root DIR] [--run DIR] [--debug] COMMAND [ARGS...]", "",
             "commands:"]
    for verb, (_, text) in VERBS.items():
        lines.append(f"  {verb:<10}{text}")
    for group, (subverbs, text) in GROUPS.items():
        lines.append(f"  {group:<10}{text} ({', '.join(subverbs)})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    root = run_dir = None
    try:
        while argv and argv[0].startswith("-"):
            opt = argv.pop(0)
            if opt in ("--debug", "-D"):
                debug = True
            elif opt in ("--root", "--run"):
                if not argv:
                    raise UsageError(f"flag needs an argument: {opt}")
                if opt == "--root":
                    root = argv.pop(0)
                else:
                    run_dir = argv.pop(0)
            elif opt in ("--version", "-v"):
                argv = ["version"]
                break
            elif opt in ("--help", "-h"):
                sys.stdout.write(_usage())
                return 0
            else:
                raise UsageError(f"unknown flag: {opt}")
        if not argv:
            sys.stdout.write(_usage())
            return 0
        verb = argv.pop(0)
        if verb in GROUPS:
            subverbs, _ = GROUPS[verb]
            if not argv or argv[0] not in subverbs:
                raise UsageError(f"usage: hutch {verb} {{" + ",".join(subverbs) + "}")
            sub = argv.pop(0)
            module_name, prog = subverbs[sub], f"hutch {verb} {sub}"
            help_text = ""
        elif verb in VERBS:
            module_name, help_text = VERBS[verb]
            prog = f"hutch {verb}"
        else:
            raise UsageError(f"hutch: '{verb}' is not a hutch command (see 'hutch --help')")
        import importlib

        from hutch.config import Settings

        module = importlib.import_module(f"hutch.cli.{module_name}")
        parser = _parser(prog, help_text or getattr(module, "HELP", ""))
        module.add_arguments(parser)
        args = parser.parse_args(argv)
        return int(module.run(args, Settings(root=root, run=run_dir)) or 0)
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return 125
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, never a traceback
        return _report(e, debug)


def _report(e: BaseException, debug: bool) -> int:
    from hutch.errors import HutchError

    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(e, HutchError):
        msg = f"Error: {e}"
        if e.hint:
            msg += f"\nhint: {e.hint}"
        sys.stderr.write(msg + "\n")
        return getattr(e, "exit_code", 1)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"Error: {e.strerror or e}{where}\n")
        return 1
    sys.stderr.write(f"Error: internal error: {e.__class__.__name__}: {e}\n"
                     "hint: run with --debug for the traceback\n")
    return 125


if __name__ == "__main__":
    sys.exit(main())
