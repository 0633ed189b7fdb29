#!/usr/bin/env bash
# `make demo`: build an image from the host's busybox, serve it from a local registry,
# pull it with hutch and run a container (see scripts/demo.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
exec "$here/.venv/bin/python" "$here/scripts/demo.py"
