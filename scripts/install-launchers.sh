#!/usr/bin/env bash
# Replace pip's console script for hutch-runtime with a lean launcher.
#
# pip's template does `import re` (to strip "-script.py" from argv[0]): ~5 ms, paid on
# every container start. hutch-runtime needs only the standard library, so it also runs
# with -I -S (no site, no .pth processing, no environment influence): another ~3 ms.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=$here/.venv
# It also skips the interpreter's teardown (os._exit after flushing): nothing is left to
# clean up, and finalising every module costs another millisecond or two. The collector
# is off: a short-lived command makes no cycles worth the pauses.
cat > "$venv/bin/hutch-runtime" <<PY
#!$venv/bin/python -IS
import gc
gc.disable()
import os
import sys
sys.path.insert(0, "$here/src")
from hutch.runtime.cli import main
code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
PY
chmod 755 "$venv/bin/hutch-runtime"

# hutch: the same lean start. -S skips site, so the venv's site-packages (httpx, rich,
# zstandard, for the verbs that pull or draw) is put on the path by hand, after src.
# The collector stays off for the short-lived command; a monitor forked from it turns it
# back on (hutch.engine.monitor).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$venv/bin/hutch" <<PY
#!$venv/bin/python -IS
import gc
gc.disable()
import os
import sys
sys.path[:0] = ["$here/src"]
sys.path.append("$site")
from hutch.cli.main import main
code = main()
try:
    sys.stdout.flush()
except BrokenPipeError:
    pass
try:
    sys.stderr.flush()
except BrokenPipeError:
    pass
os._exit(code)
PY
chmod 755 "$venv/bin/hutch"
