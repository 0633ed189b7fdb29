"""hutch pull [-q] [--platform P] NAME[:TAG|@DIGEST]"""

from __future__ import annotations

import sys

HELP = "Pull an image from a registry"


def add_arguments(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the image name")
    parser.add_argument("--platform", help="os/arch[/variant] to pull from an index")
    parser.add_argument("name")


def run(args, settings) -> int:
    from hutch.cli._common import service
    from hutch.image.pull import pull

    with service(settings) as svc:
        progress = None if args.quiet else _progress()
        try:
            image = pull(svc, args.name, platform=args.platform, progress=progress)
        finally:
            if progress is not None:
                progress.close()
        if args.quiet:
            print(image.name)
        else:
            print(f"Digest: {image.record.target}")
            print(f"Status: Downloaded newer image for {image.name}")
            print(image.name)
    return 0


def _progress():
    if sys.stderr.isatty():
        from hutch.cli._progress import RichPullProgress

        return RichPullProgress()
    from hutch.cli._progress import LinePullProgress

    return LinePullProgress()
