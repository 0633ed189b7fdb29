"""Fixtures for the runtime integration tests.

Each test that asks for `runtime` runs once per OCI runtime (runc, hutch-runtime; see
--runtimes). Both binaries get the same argv; only the binary and its --root differ.
Differential tests also ask for `reference` (always runc) and compare what a container
observes under both. Everything a test makes (containers, cgroups, mounts, processes,
network namespaces) is removed in finalizers, also when the test fails; what had to be
removed by hand after `delete --force` is reported at the end of the session as a leak.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bundles import (
    BUSYBOX,
    HUTCH_RUNTIME,
    RUNC,
    Bundle,
    Result,
    Runtime,
    build_busybox_rootfs,
    make_bundle,
    unmount_under,
)

LEAKS: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LEAKS:
        terminalreporter.section("left behind after delete --force (removed by the tests)")
        for leak in LEAKS:
            terminalreporter.line(leak)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rootfs template: never run a container on it, copy it (make_bundle does)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (apt-get install busybox-static)")
    if not Path(RUNC).is_file():
        pytest.skip("needs runc, the reference runtime (apt-get install runc)")
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def _binary(name: str) -> str:
    return RUNC if name == "runc" else HUTCH_RUNTIME


def _new_runtime(name: str, base: Path) -> Runtime:
    binary = _binary(name)
    if not Path(binary).exists():
        pytest.skip(f"{name} not installed at {binary}")
    work = base / f"work-{name}"
    work.mkdir()
    # A short --root: runtimes put unix sockets and fifos there (108-byte sun_path).
    root = Path(tempfile.mkdtemp(prefix=f"hutch-test-root-{name[:5]}-", dir="/tmp"))
    return Runtime(name=name, binary=binary, root=root, workdir=work)


def _finish(rt: Runtime) -> None:
    leaks = rt.cleanup()
    LEAKS.extend(f"[{rt.name}] {leak}" for leak in leaks)
    shutil.rmtree(rt.root, ignore_errors=True)


@pytest.fixture
def bundle_base() -> Iterator[Path]:
    """Where a test's bundles live: a world-traversable (0711) directory, so a root
    mapped into a user namespace can reach the rootfs (pytest's tmp dirs are 0700).
    `runtime` depends on it, so it is removed only after the runtimes cleaned up."""
    base = Path(tempfile.mkdtemp(prefix="hutch-test-b-", dir="/tmp"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        if unmount_under([base]):
            LEAKS.append(f"mounts under {base}")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def runtime(runtime_name: str, busybox_rootfs: Path, bundle_base: Path) -> Iterator[Runtime]:
    rt = _new_runtime(runtime_name, bundle_base)
    try:
        yield rt
    finally:
        _finish(rt)


@pytest.fixture
def reference(runtime: Runtime, bundle_base: Path) -> Iterator[Runtime]:
    """runc, the reference; the same object as `runtime` when that is runc."""
    if runtime.name == "runc":
        yield runtime
        return
    rt = _new_runtime("runc", bundle_base)
    try:
        yield rt
    finally:
        _finish(rt)


@pytest.fixture
def new_bundle(busybox_rootfs: Path, bundle_base: Path) -> Callable[..., Bundle]:
    """new_bundle(*args) -> a fresh bundle (own rootfs copy, unique cgroupsPath)."""
    counter = iter(range(1000))

    def _new(*args: str) -> Bundle:
        return make_bundle(busybox_rootfs, bundle_base / f"bundle{next(counter)}", list(args))

    return _new


@dataclass
class Observation:
    mine: Result
    ref: Result
    bundle: Bundle
    ref_bundle: Bundle


@pytest.fixture
def observe(
    runtime: Runtime, reference: Runtime, new_bundle: Callable[..., Bundle]
) -> Callable[..., Observation]:
    """observe(*args, prepare=fn) runs `args` in a fresh bundle (prepared by fn) under
    runc and, when testing hutch-runtime, under it too: the differential core."""

    def _observe(*args: str, prepare: Callable[[Bundle], None] | None = None) -> Observation:
        ref_bundle = new_bundle(*args)
        if prepare:
            prepare(ref_bundle)
        ref = reference.run(ref_bundle)
        if runtime is reference:
            return Observation(ref, ref, ref_bundle, ref_bundle)
        bundle = new_bundle(*args)
        if prepare:
            prepare(bundle)
        mine = runtime.run(bundle)
        return Observation(mine, ref, bundle, ref_bundle)

    return _observe


@pytest.fixture
def netns() -> Iterator[str]:
    """A named network namespace (ip netns add), removed afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip")
    name = f"hutchtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for unix sockets (sun_path is 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="hts-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
