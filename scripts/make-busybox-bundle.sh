#!/usr/bin/env bash
# Build an OCI bundle whose rootfs is the host's busybox-static:
#   scripts/make-busybox-bundle.sh DIR [ARGS...]
# writes DIR/rootfs and DIR/config.json (hutch-runtime spec, with ARGS as process.args).
set -euo pipefail
dir=$1; shift
bb=$(command -v busybox)
rm -rf "$dir"; mkdir -p "$dir/rootfs"/{bin,etc,proc,sys,dev,tmp,root}
cp "$bb" "$dir/rootfs/bin/busybox"
for applet in $("$dir/rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$dir/rootfs/etc/group"
chmod 1777 "$dir/rootfs/tmp"
here=$(cd "$(dirname "$0")/.." && pwd)
( cd "$dir" && "$here/.venv/bin/hutch-runtime" spec )
if [ $# -gt 0 ]; then
  "$here/.venv/bin/python" - "$dir/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
json.dump(spec, open(path, "w"), indent=2)
PY
fi
