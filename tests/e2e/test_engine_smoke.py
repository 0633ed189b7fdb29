"""Smoke: the e2e fixture's images run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_run_prints_and_passes_the_exit_code(hutch):
    p = hutch("run", "--rm", hutch.image, "sh", "-c", "echo hi; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == "hi\n"


def test_config_image_defaults_apply(hutch):
    p = hutch("run", "--rm", hutch.config_image)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from image-env in /work as app\n"
