#!/usr/bin/env bash
# Replace pip's console script for hutch-runtime with a lean launcher.
#
# pip's template does `import re` (to strip "-script.py" from argv[0]): ~5 ms, paid on
# every container start. hutch-runtime needs only the standard library, so it also runs
# with -I -S (no site, no .pth processing, no environment influence): another ~3 ms.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=$here/.venv
cat > "$venv/bin/hutch-runtime" <<PY
#!$venv/bin/python -IS
import sys
sys.path.insert(0, "$here/src")
from hutch.runtime.cli import main
sys.exit(main())
PY
chmod 755 "$venv/bin/hutch-runtime"
