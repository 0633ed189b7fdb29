"""hutch info [--format json]"""

from __future__ import annotations

HELP = "Display system-wide information"


def add_arguments(parser) -> None:
    parser.add_argument("-f", "--format", default=None, help="json")


def gather(settings) -> dict:
    import os
    import platform

    from hutch.engine.containers import Engine
    from hutch.mount.mountinfo import lookup

    with Engine(settings) as eng:
        recs = eng.list(all=True)
        images = eng.images.list()
        driver = eng.images.snapshotter_name
    try:
        cgroup_v2 = lookup("/sys/fs/cgroup").fstype == "cgroup2"
    except Exception:  # noqa: BLE001
        cgroup_v2 = False
    try:
        from importlib.metadata import version

        ver = version("hutch")
    except Exception:  # noqa: BLE001
        ver = "unknown"
    return {
        "Containers": len(recs),
        "ContainersRunning": sum(r.state == "running" for r in recs),
        "ContainersPaused": sum(r.state == "paused" for r in recs),
        "ContainersStopped": sum(r.state not in ("running", "paused") for r in recs),
        "Images": len(images),
        "Driver": driver,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if cgroup_v2 else "1",
        "DefaultRuntime": "hutch-runtime (in-process)",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count(),
        "MemTotal": _mem_total(),
        "HutchRootDir": settings.root,
        "HutchRunDir": settings.run,
        "ServerVersion": ver,
        "Daemon": "none (daemonless: one monitor process per running container)",
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(args, settings) -> int:
    info = gather(settings)
    if args.format == "json" or (args.format or "").strip() == "{{json .}}":
        import json

        print(json.dumps(info))
        return 0
    if args.format:
        from hutch.cli.inspect import render

        print(render(args.format, info))
        return 0
    print("Server:")
    print(f" Containers: {info['Containers']}")
    print(f"  Running: {info['ContainersRunning']}")
    print(f"  Paused: {info['ContainersPaused']}")
    print(f"  Stopped: {info['ContainersStopped']}")
    print(f" Images: {info['Images']}")
    print(f" Server Version: {info['ServerVersion']}")
    print(f" Storage Driver: {info['Driver']}")
    print(f" Logging Driver: {info['LoggingDriver']}")
    print(f" Cgroup Driver: {info['CgroupDriver']}")
    print(f" Cgroup Version: {info['CgroupVersion']}")
    print(f" Default Runtime: {info['DefaultRuntime']}")
    print(" Security Options:\n  seccomp\n   Profile: builtin")
    print(f" Kernel Version: {info['KernelVersion']}")
    print(f" Operating System: {info['OperatingSystem']}")
    print(f" OSType: {info['OSType']}")
    print(f" Architecture: {info['Architecture']}")
    print(f" CPUs: {info['NCPU']}")
    from hutch.cli._common import human_size

    print(f" Total Memory: {human_size(info['MemTotal'])}")
    print(f" Hutch Root Dir: {info['HutchRootDir']}")
    print(f" Hutch Run Dir: {info['HutchRunDir']}")
    print(f" Daemon: {info['Daemon']}")
    return 0
