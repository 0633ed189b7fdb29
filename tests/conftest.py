"""Shared test configuration: command-line options, marker-based skips, and the test
session's own network namespace.

Integration tests build their rootfs and images from the host's static busybox
(busybox-static), so no test needs the network; see tests/integration/conftest.py.

As root, the whole session runs in a network namespace of its own (with only lo, up):
registries listen on its loopback, and every container a test starts on hutch's default
bridge network makes its bridge, veths and nftables rules there. The host's network is
never touched, and all of it vanishes with the session.
"""

from __future__ import annotations

import os

import pytest

ALL_RUNTIMES = ("runc", "hutch-runtime")


_HOST_NETNS: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0 or _HOST_NETNS:
        return
    from hutch.linux import libc
    from hutch.network.rtnl import Rtnl

    # pytest is single-threaded here: the whole process (and what it spawns) moves.
    _HOST_NETNS.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
    libc.unshare(libc.CLONE_NEWNET)
    with Rtnl() as rt:
        rt.set_up(rt.link_index("lo"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HOST_NETNS:
        from hutch.linux import libc

        fd = _HOST_NETNS.pop()
        libc.setns(fd, libc.CLONE_NEWNET)
        os.close(fd)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runtimes",
        default=os.environ.get("HUTCH_TEST_RUNTIMES", ",".join(ALL_RUNTIMES)),
        help="comma-separated OCI runtimes the runtime tests run against "
        "(default: runc,hutch-runtime; env HUTCH_TEST_RUNTIMES)",
    )


def selected_runtimes(config: pytest.Config) -> list[str]:
    names = [n.strip() for n in config.getoption("--runtimes").split(",") if n.strip()]
    unknown = set(names) - set(ALL_RUNTIMES)
    if unknown:
        raise pytest.UsageError(f"--runtimes: unknown {sorted(unknown)}; known: {ALL_RUNTIMES}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests asking for `runtime_name` run once per selected OCI runtime."""
    if "runtime_name" in metafunc.fixturenames:
        metafunc.parametrize("runtime_name", selected_runtimes(metafunc.config))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration and e2e tests need root and a real kernel: skip them, with the reason,
    rather than fail when run unprivileged."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (integration/e2e tests change kernel state)")
    for item in items:
        if item.get_closest_marker("integration") or item.get_closest_marker("e2e"):
            item.add_marker(skip)
