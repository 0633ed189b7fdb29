"""The installed commands, run the way a user runs them (root, real kernel)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / ".venv" / "bin" / "hutch-runtime"
HUTCH = REPO / ".venv" / "bin" / "hutch"


def _run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=60, **kw)


def test_demo_prints_hostname_pid_1_and_id(tmp_path):
    p = _run("bash", REPO / "scripts" / "demo.sh")
    assert p.returncode == 0, p.stderr
    assert "hostname: demo" in p.stdout
    assert "my pid is 1" in p.stdout
    assert "id: uid=0(root) gid=0(root)" in p.stdout


def test_spec_then_run_in_a_bundle_directory_like_runc(tmp_path):
    bundle = tmp_path / "bundle"
    p = _run(REPO / "scripts" / "make-busybox-bundle.sh", bundle, "sh", "-c", "exit 7")
    assert p.returncode == 0, p.stderr
    p = _run(RUNTIME, "--root", tmp_path / "state", "run", "e2e-exit", cwd=bundle)
    assert p.returncode == 7, p.stderr
    p = _run(RUNTIME, "--root", tmp_path / "state", "list", "-q")
    assert p.stdout.strip() == ""


def test_entry_points_start_without_site_and_with_the_venv_interpreter():
    first = RUNTIME.read_text().splitlines()[0]
    assert first.startswith(f"#!{REPO}/.venv/bin/python")
    p = _run(RUNTIME, "--version")
    assert p.returncode == 0 and "hutch-runtime version" in p.stdout
    p = _run(HUTCH, "version")
    assert p.returncode == 0 and "hutch version" in p.stdout


def test_unknown_command_is_one_clear_line(tmp_path):
    p = _run(RUNTIME, "--root", tmp_path, "frobnicate", "x")
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "frobnicate" in p.stderr
