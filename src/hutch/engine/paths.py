"""Where a container's files live (no imports beyond os: the lean monitor uses it)."""

from __future__ import annotations

import os


class ContainerPaths:
    def __init__(self, settings, container_id: str) -> None:
        self.id = container_id
        self.root_dir = os.path.join(settings.root, "containers", container_id)
        self.run_dir = os.path.join(settings.run, "containers", container_id)
        self.bundle = self.run_dir
        self.config_json = os.path.join(self.run_dir, "config.json")
        self.rootfs = os.path.join(self.run_dir, "rootfs")
        self.log_path = os.path.join(self.root_dir, f"{container_id}-json.log")
        self.attach_sock = os.path.join(self.run_dir, "attach.sock")
        self.monitor_lock = os.path.join(self.run_dir, "monitor.lock")
        self.monitor_pid = os.path.join(self.run_dir, "monitor.pid")
        self.stopping = os.path.join(self.run_dir, "stopping")
        # `restart` is stopping it: an --rm container is kept for the start that follows
        # (docker turns AutoRemove off for the length of a restart).
        self.restarting = os.path.join(self.run_dir, "restarting")
        # The pinned network namespace of a container on a bridge network; while it
        # exists, something of its network may be left to tear down (engine.networking).
        self.netns = os.path.join(netns_dir(settings), container_id)


def netns_dir(settings) -> str:
    return os.path.join(settings.run, "netns")
