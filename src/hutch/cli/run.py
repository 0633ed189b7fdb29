"""hutch run [OPTIONS] IMAGE [COMMAND] [ARG...]: create, start, and (unless -d) attach."""

from __future__ import annotations

HELP = "Create and run a new container from an image"


def add_arguments(parser) -> None:
    from hutch.cli._run_options import add_create_arguments

    parser.add_argument("-d", "--detach", action="store_true",
                        help="run in the background and print the container id")
    parser.add_argument("--rm", action="store_true",
                        help="remove the container when it exits")
    parser.add_argument("--detach-keys", default=None,
                        help="key sequence for detaching a container (ctrl-p,ctrl-q)")
    parser.add_argument("--sig-proxy", default="true", choices=("true", "false"),
                        help="proxy received signals to the process")
    add_create_arguments(parser)


def run(args, settings) -> int:
    from hutch.cli._container import engine_errors

    with engine_errors():
        return _run(args, settings)


def _run(args, settings) -> int:
    from hutch.cli._container import AttachLink
    from hutch.cli._run_options import create_options
    from hutch.engine.containers import import_for_run
    from hutch.engine.monitor import EarlyMonitor
    from hutch.engine.names import new_id

    opts = create_options(args)
    import_for_run()
    # The container's monitor is forked now, with the id the container will get: it
    # prepares on the other core while we resolve the image and create the container.
    # (No SQLite connection is open yet: nothing to hand down. Forking before the
    # options are parsed would be sooner, but the command then imports the engine with
    # a forked heap, and its copy-on-write faults cost more than the head start gains.)
    link = None if args.detach else AttachLink(opts.run.tty)
    early = EarlyMonitor(settings, new_id(), attach=link.theirs if link else None,
                         console_size=link.size if link else None)
    try:
        return _create_and_run(args, settings, opts, early, link)
    finally:
        early.abort()
        if link is not None:
            link.close()


def _create_and_run(args, settings, opts, early, link) -> int:
    from hutch.cli._run_options import pull_progress
    from hutch.engine.containers import Engine

    with Engine(settings) as eng:
        progress = None
        try:
            image = None
            try:
                image = eng.images.lookup(opts.image) if opts.pull != "always" else None
            except Exception:  # noqa: BLE001 - resolved (and pulled) below
                image = None
            if image is None:
                progress = pull_progress()
                image = eng.resolve_image(opts.image, opts.pull, opts.platform, progress)
        finally:
            if progress is not None:
                progress.close()
        rec = eng.create(opts, image=image, container_id=early.id)
        if args.detach:
            from hutch.cli._container import start_or_cleanup

            start_or_cleanup(eng, rec, opts.auto_remove, early=early)
            print(rec.id)
            return 0
        from hutch.cli._container import attach_and_wait

        return attach_and_wait(eng, rec, args, start=True, link=link, early=early)
