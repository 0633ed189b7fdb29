#!/usr/bin/env bash
# `make demo`: until images exist, build a busybox bundle from the host's busybox-static
# and run it with hutch-runtime, printing the container's hostname, its pid 1 and `id`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/hutch-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$here/scripts/make-busybox-bundle.sh" "$work/bundle" \
  sh -c 'echo "hostname: $(hostname)"; echo "pid 1: $(cat /proc/1/comm) (my pid is $$)"; echo "id: $(id)"'
echo "+ hutch-runtime run --bundle $work/bundle demo"
"$here/.venv/bin/hutch-runtime" --root "$work/state" run --bundle "$work/bundle" "demo-$$"
