"""The run flags about networking, checked before anything is created."""

from __future__ import annotations

import pytest

from hutch.engine.networking import parse_net_options, uses_bridge
from hutch.errors import InvalidArgument

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode,bridge", [
    ("bridge", True), ("mynet", True), ("none", False), ("host", False),
    ("container:web", False), ("", False),
])
def test_which_modes_get_a_bridge_endpoint(mode, bridge):
    assert uses_bridge(mode) is bridge


def test_default_is_the_bridge_network():
    assert parse_net_options(network="").mode == "bridge"
    assert parse_net_options(network="default").mode == "bridge"


def test_publish_specs_are_parsed_once_at_create():
    opts = parse_net_options(network="bridge", publish=["8080:80", "127.0.0.1::53/udp"])
    assert opts.publish == [["tcp", "", 8080, 80], ["udp", "127.0.0.1", 0, 53]]


@pytest.mark.parametrize("kw,message", [
    ({"network": "bridge", "aliases": ["x"]}, "alias is supported only"),
    ({"network": "bridge", "ip": "10.77.0.9"}, "user defined networks only"),
    ({"network": "mynet", "ip": "not-an-ip"}, "invalid IPv4 address"),
    ({"network": "bridge", "publish": ["99999:80"]}, "invalid hostPort"),
    ({"network": "bridge", "dns": ["resolver.example"]}, "not an ip address"),
    ({"network": "bridge", "add_hosts": ["nocolon"]}, "add-host"),
])
def test_bad_network_flags_are_refused(kw, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_net_options(**kw)


def test_user_networks_take_aliases_and_addresses():
    opts = parse_net_options(network="front", aliases=["www"], ip="10.78.0.10",
                             dns=["192.0.2.53"], dns_search=["a.test"],
                             dns_options=["ndots:2"], add_hosts=["gw:host-gateway"])
    assert (opts.mode, opts.aliases, opts.ip) == ("front", ["www"], "10.78.0.10")
    assert opts.extra_hosts == ["gw:host-gateway"]


@pytest.mark.parametrize("text,keys", [
    ("80", ["80/tcp"]), ("53/udp", ["53/udp"]), ("8000-8002/TCP", ["8000/tcp", "8001/tcp",
                                                                     "8002/tcp"]),
])
def test_expose_gives_one_exposed_port_per_port(text, keys):
    from hutch.engine.containers import port_keys

    assert port_keys(text) == keys


@pytest.mark.parametrize("text", ["0", "65536", "http", "80/icmp", "90-80", "80-"])
def test_bad_expose_is_refused(text):
    from hutch.engine.containers import port_keys

    with pytest.raises(InvalidArgument, match="--expose"):
        port_keys(text)
