"""`make demo`: the whole path a user takes, on this machine only.

Builds a one-layer image from the host's busybox-static, serves it from Debian's
docker-registry on 127.0.0.1 (skopeo pushes it there), then `hutch pull`s it and
`hutch run`s a container that prints its hostname, its pid 1, `id` and its address on
the default bridge network. Everything goes into a temporary HUTCH_ROOT/HUTCH_RUN that is
removed at the end; the run happens in a network namespace of its own (`unshare --net`),
so the bridge, veth and nftables rules it makes vanish with it and the host's network is
not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "tests", "integration"))

import registry_fixtures as rf  # noqa: E402

HUTCH = os.path.join(HERE, ".venv", "bin", "hutch")
SCRIPT = ('echo "hostname: $(hostname)"; echo "pid 1: $(cat /proc/1/comm) (my pid is $$)"; '
          'echo "id: $(id)"; echo "eth0: $(ip -o -4 addr show eth0 | '
          'sed -e \'s/.*inet \\([^ ]*\\).*/\\1/\')"')


def sh(*argv: str) -> None:
    print("+ " + " ".join(argv[:1] + tuple(a if " " not in a else repr(a) for a in argv[1:])),
          flush=True)
    subprocess.run(argv, check=True)


def main() -> int:
    work = tempfile.mkdtemp(prefix="hutch-demo.")
    try:
        image = rf.build_busybox_layout(Path(work) / "layout")
        with rf.start_registry() as reg:
            print(f"+ docker-registry serving on {reg.host}", flush=True)
            ref = f"{reg.host}/demo/busybox:latest"
            print(f"+ skopeo copy oci:{image.layout}:latest docker://{ref}", flush=True)
            rf.skopeo_copy(image.layout, "latest", reg, "demo/busybox:latest")
            hutch = [HUTCH, "--root", os.path.join(work, "root"),
                     "--run", os.path.join(work, "run")]
            sh(*hutch, "pull", ref)
            sh("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "-",
               *hutch, "run", "--rm", "--pull", "never", "--hostname", "demo", ref,
               "sh", "-c", SCRIPT)
    finally:
        subprocess.run(["umount", "-R", "-l", os.path.join(work, "run")],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
