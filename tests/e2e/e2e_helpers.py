"""Small helpers the e2e test modules share (imported by name: tests/e2e is on sys.path)."""

from __future__ import annotations

import re
import time


def run_d(hutch, *args: str) -> str:
    """`hutch run -d ...`: the full id it prints."""
    cid = hutch.out("run", "-d", *args).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    return cid


def wait_for(pred, timeout: float = 10, what: str = "condition", interval: float = 0.05):
    """Poll `pred` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
