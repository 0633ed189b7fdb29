"""hutch.network.firewall without root: the nft command text each method sends (through a
fake that records it), the handles it picks from a listing, input validation, and the
errno mapping of hutch.linux.nftables' error text."""

from __future__ import annotations

import errno

import pytest

from hutch.errors import InvalidArgument
from hutch.linux import nftables
from hutch.network import firewall
from hutch.network.firewall import Firewall, NetRules, PortRule

pytestmark = pytest.mark.unit

ENOENT = OSError(errno.ENOENT, "nft: Error: Could not process rule: No such file or directory")


class FakeNft:
    """Records command text; `listing` is what `list table` returns (None: no table)."""

    def __init__(self, listing: object = None, fail: list[OSError] | None = None) -> None:
        self.listing = listing
        self.fail = list(fail or ())
        self.runs: list[str] = []
        self.lists: list[str] = []

    def run(self, cmds: str) -> str:
        self.runs.append(cmds)
        if self.fail:
            raise self.fail.pop(0)
        return ""

    def run_json(self, cmds: str) -> object:
        self.lists.append(cmds)
        if self.listing is None:
            raise OSError(errno.ENOENT, "nft: Error: No such file or directory")
        return self.listing


def rule(chain: str, handle: int, comment: str | None = None) -> dict:
    r = {"family": "ip", "table": "hutch", "chain": chain, "handle": handle, "expr": []}
    if comment is not None:
        r["comment"] = comment
    return {"rule": r}


def listing(*items: dict, bridges: tuple[str, ...] = ()) -> dict:
    s = {"family": "ip", "name": "bridges", "table": "hutch", "type": "ifname", "handle": 6}
    if bridges:
        s["elem"] = list(bridges)
    return {"nftables": [{"metainfo": {"version": "1.0.6"}},
                         {"table": {"family": "ip", "name": "hutch", "handle": 1}},
                         {"set": s}, *items]}


BASE = firewall.base_commands()
EXISTING = listing(
    rule("prerouting", 7),
    rule("postrouting", 9, "net:br0"),
    rule("postrouting", 10, "net:br0"),
    rule("postrouting", 11, "net:br1"),
    rule("forward", 12, "net:br0"),
    rule("ports", 14, "ctr:abc"),
    rule("ports", 15, "ctr:abc"),
    rule("ports", 16, "ctr:abcd"),
    bridges=("br0", "br1"),
)


# --- command text ------------------------------------------------------------------------


def test_base_creates_table_chains_and_set_and_resets_the_jump_rules() -> None:
    assert BASE.splitlines() == [
        "add table ip hutch",
        "add chain ip hutch prerouting { type nat hook prerouting priority dstnat; policy accept; }",
        "add chain ip hutch output { type nat hook output priority -100; policy accept; }",
        "add chain ip hutch ports",
        "add chain ip hutch postrouting { type nat hook postrouting priority srcnat; policy accept; }",
        "add chain ip hutch forward { type filter hook forward priority filter; policy accept; }",
        "add set ip hutch bridges { type ifname; }",
        "flush chain ip hutch prerouting",
        "flush chain ip hutch output",
        "add rule ip hutch prerouting fib daddr type local jump ports",
        "add rule ip hutch output fib daddr type local jump ports",
    ]


def test_base_uses_the_table_asked_for() -> None:
    assert all(" ip other" in line for line in firewall.base_commands("other").splitlines())


def test_network_masquerades_its_subnet_and_isolates_it_from_other_hutch_bridges() -> None:
    text = firewall.network_rules("hutch", NetRules("br0", "10.88.0.0/16"))
    assert text.splitlines() == [
        'add rule ip hutch postrouting ip saddr 10.88.0.0/16 oifname != "br0" masquerade comment "net:br0"',
        'add rule ip hutch postrouting oifname "br0" ip saddr 127.0.0.0/8 masquerade comment "net:br0"',
        'add rule ip hutch postrouting ip saddr 10.88.0.0/16 oifname "br0" ct status dnat masquerade comment "net:br0"',
        'add rule ip hutch forward iifname "br0" oifname != "br0" oifname @bridges drop comment "net:br0"',
        'add rule ip hutch forward oifname "br0" iifname != "br0" iifname @bridges drop comment "net:br0"',
        'add element ip hutch bridges { "br0" }',
    ]


def test_internal_network_is_not_masqueraded_and_forwards_only_within_its_bridge() -> None:
    text = firewall.network_rules("hutch", NetRules("br-int", "172.30.0.0/24", internal=True))
    assert "ip saddr 172.30.0.0/24 oifname !=" not in text
    assert 'add rule ip hutch forward iifname "br-int" oifname != "br-int" drop comment "net:br-int"' in text
    assert 'add rule ip hutch forward oifname "br-int" iifname != "br-int" drop comment "net:br-int"' in text
    assert "@bridges drop" not in text
    assert 'add element ip hutch bridges { "br-int" }' in text


def test_port_rules_dnat_with_and_without_a_host_address() -> None:
    text = firewall.port_rules("hutch", "c0ffee", [
        PortRule("tcp", "", 8080, "10.88.0.2", 80),
        PortRule("udp", "127.0.0.1", 5353, "10.88.0.2", 53),
        PortRule("tcp", "0.0.0.0", 8443, "10.88.0.3", 443),
    ])
    assert text.splitlines() == [
        'add rule ip hutch ports tcp dport 8080 dnat to 10.88.0.2:80 comment "ctr:c0ffee"',
        'add rule ip hutch ports ip daddr 127.0.0.1 udp dport 5353 dnat to 10.88.0.2:53 comment "ctr:c0ffee"',
        'add rule ip hutch ports tcp dport 8443 dnat to 10.88.0.3:443 comment "ctr:c0ffee"',
    ]


def test_no_port_rules_is_no_text() -> None:
    assert firewall.port_rules("hutch", "abc", []) == ""


def test_delete_helpers() -> None:
    assert firewall.delete_rules("hutch", [("ports", 14), ("forward", 3)]) == (
        "delete rule ip hutch ports handle 14\ndelete rule ip hutch forward handle 3\n")
    assert firewall.delete_element("hutch", "br0") == (
        'add element ip hutch bridges { "br0" }\ndelete element ip hutch bridges { "br0" }\n')
    assert firewall.delete_table() == "add table ip hutch\ndelete table ip hutch\n"


def test_delete_rules_refuses_strange_handles() -> None:
    for chain, handle in [("ports", 0), ("ports", "14"), ("ports; flush ruleset", 1),
                          ("ports", True)]:
        with pytest.raises(InvalidArgument):
            firewall.delete_rules("hutch", [(chain, handle)])


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("bridge", [
    "", ".", "..", "a" * 16, 'br0"', "br 0", "br0;", "br0\n", "br/0", "brü", 0, None,
])
def test_bad_bridge_names_are_refused(bridge) -> None:
    with pytest.raises(InvalidArgument):
        firewall.network_rules("hutch", NetRules(bridge, "10.0.0.0/24"))


def test_longest_bridge_name_is_accepted() -> None:
    name = "a.b-c_d01234567"
    assert len(name) == 15
    assert f'oifname "{name}"' in firewall.network_rules("hutch", NetRules(name, "10.0.0.0/24"))


@pytest.mark.parametrize("subnet", [
    "10.0.0.1/24", "10.0.0.0/33", "fd00::/64", "10.0.0.0/24 drop", "", "any", None,
])
def test_bad_subnets_are_refused(subnet) -> None:
    with pytest.raises(InvalidArgument):
        firewall.network_rules("hutch", NetRules("br0", subnet))


@pytest.mark.parametrize("owner", [
    "", "-abc", "a b", 'abc"', "abc;", "abc\n", "x" * 101, None, 7,
])
def test_bad_owners_are_refused(owner) -> None:
    with pytest.raises(InvalidArgument):
        firewall.port_rules("hutch", owner, [PortRule("tcp", "", 80, "10.0.0.2", 80)])


def test_a_full_container_id_is_a_valid_owner() -> None:
    owner = "0123456789abcdef" * 4
    assert f'comment "ctr:{owner}"' in firewall.port_rules(
        "hutch", owner, [PortRule("tcp", "", 80, "10.0.0.2", 80)])


@pytest.mark.parametrize("port_rule", [
    PortRule("sctp", "", 80, "10.0.0.2", 80),
    PortRule("TCP", "", 80, "10.0.0.2", 80),
    PortRule("tcp", "", 0, "10.0.0.2", 80),
    PortRule("tcp", "", 65536, "10.0.0.2", 80),
    PortRule("tcp", "", "80", "10.0.0.2", 80),
    PortRule("tcp", "", True, "10.0.0.2", 80),
    PortRule("tcp", "", 80, "10.0.0.2", -1),
    PortRule("tcp", "", 80, "10.0.0.2", 80.0),
    PortRule("tcp", "::1", 80, "10.0.0.2", 80),
    PortRule("tcp", "127.0.0.1 tcp dport 1", 80, "10.0.0.2", 80),
    PortRule("tcp", "", 80, "0.0.0.0", 80),
    PortRule("tcp", "", 80, "224.0.0.1", 80),
    PortRule("tcp", "", 80, "10.0.0.2:81", 80),
    PortRule("tcp", "", 80, "", 80),
])
def test_bad_port_rules_are_refused(port_rule) -> None:
    with pytest.raises(InvalidArgument):
        firewall.port_rules("hutch", "abc", [port_rule])


@pytest.mark.parametrize("table", ["", "1abc", "hu tch", "hutch;", "a" * 33, None])
def test_bad_table_names_are_refused(table) -> None:
    with pytest.raises(InvalidArgument):
        Firewall(FakeNft(), table=table)


# --- the Firewall through a fake nft -----------------------------------------------------


def test_ensure_base_runs_the_base_batch() -> None:
    nft = FakeNft()
    Firewall(nft).ensure_base()
    assert nft.runs == [BASE]


def test_add_network_on_a_fresh_host_creates_base_and_rules_in_one_batch() -> None:
    nft = FakeNft(listing=None)
    Firewall(nft).add_network(NetRules("br0", "10.88.0.0/16"))
    assert nft.lists == ["list table ip hutch\n"]
    assert nft.runs == [BASE + firewall.network_rules("hutch", NetRules("br0", "10.88.0.0/16"))]


def test_add_network_again_replaces_only_its_own_rules() -> None:
    nft = FakeNft(EXISTING)
    net = NetRules("br0", "10.88.0.0/16")
    Firewall(nft).add_network(net)
    assert nft.runs == [BASE
                        + "delete rule ip hutch postrouting handle 9\n"
                        + "delete rule ip hutch postrouting handle 10\n"
                        + "delete rule ip hutch forward handle 12\n"
                        + firewall.network_rules("hutch", net)]


def test_remove_network_deletes_its_rules_and_set_element() -> None:
    nft = FakeNft(EXISTING)
    Firewall(nft).remove_network("br1")
    assert nft.runs == ["delete rule ip hutch postrouting handle 11\n"
                        + firewall.delete_element("hutch", "br1")]


def test_remove_network_that_is_gone_runs_nothing() -> None:
    for nft in (FakeNft(None), FakeNft(EXISTING)):
        Firewall(nft).remove_network("br9")
        assert nft.runs == []


def test_add_ports_replaces_the_owners_rules_and_not_a_prefix_sharing_owner() -> None:
    nft = FakeNft(EXISTING)
    rules = [PortRule("tcp", "", 8080, "10.88.0.2", 80)]
    Firewall(nft).add_ports("abc", rules)
    assert nft.runs == [BASE
                        + "delete rule ip hutch ports handle 14\n"
                        + "delete rule ip hutch ports handle 15\n"
                        + firewall.port_rules("hutch", "abc", rules)]


def test_remove_ports() -> None:
    nft = FakeNft(EXISTING)
    Firewall(nft).remove_ports("abcd")
    assert nft.runs == ["delete rule ip hutch ports handle 16\n"]


def test_remove_ports_of_an_unknown_owner_or_without_a_table_runs_nothing() -> None:
    for nft in (FakeNft(None), FakeNft(EXISTING)):
        Firewall(nft).remove_ports("nobody")
        assert nft.runs == []


def test_owners_and_networks() -> None:
    fw = Firewall(FakeNft(EXISTING))
    assert fw.owners() == {"abc", "abcd"}
    assert fw.networks() == {"br0", "br1"}
    assert Firewall(FakeNft(listing(bridges=("lonely",)))).networks() == {"lonely"}
    empty = Firewall(FakeNft(None))
    assert empty.owners() == set() and empty.networks() == set()


def test_remove_all_deletes_the_table_even_if_absent() -> None:
    nft = FakeNft()
    Firewall(nft, table="mine").remove_all()
    assert nft.runs == ["add table ip mine\ndelete table ip mine\n"]


def test_a_rule_vanishing_between_listing_and_batch_is_retried_with_a_fresh_listing() -> None:
    nft = FakeNft(EXISTING, fail=[ENOENT])
    Firewall(nft).remove_ports("abc")
    assert len(nft.lists) == 2 and len(nft.runs) == 2


def test_other_nft_errors_propagate() -> None:
    nft = FakeNft(EXISTING, fail=[OSError(errno.EPERM, "nft: Error: Operation not permitted")])
    with pytest.raises(OSError) as e:
        Firewall(nft).add_ports("abc", [PortRule("tcp", "", 1, "10.0.0.2", 1)])
    assert e.value.errno == errno.EPERM


def test_endless_enoent_gives_up() -> None:
    nft = FakeNft(EXISTING, fail=[ENOENT] * 10)
    with pytest.raises(OSError):
        Firewall(nft).remove_ports("abc")
    assert len(nft.runs) == 5


def test_invalid_input_reaches_no_nft_call() -> None:
    nft = FakeNft(EXISTING)
    fw = Firewall(nft)
    with pytest.raises(InvalidArgument):
        fw.add_ports("abc", [PortRule("tcp", "", 80, "10.0.0.2", 80),
                             PortRule("tcp", "", 80, "10.0.0.2; flush ruleset", 80)])
    with pytest.raises(InvalidArgument):
        fw.add_network(NetRules('x" drop', "10.0.0.0/8"))
    with pytest.raises(InvalidArgument):
        fw.remove_network("")
    assert nft.runs == [] and nft.lists == []


# --- reading listings --------------------------------------------------------------------


def test_listing_parsers_ignore_junk() -> None:
    junk = {"nftables": [1, "x", {"rule": "no"}, {"rule": {"comment": "a", "chain": "c",
                                                           "handle": "7"}},
                         {"set": {"name": "bridges", "elem": [3, {"elem": {"val": "br7"}}]}},
                         {"set": {"name": "other", "elem": ["nope"]}}]}
    assert firewall.tagged_rules(junk) == {}
    assert firewall.set_elements(junk) == {"br7"}
    assert firewall.tagged_rules([]) == {} and firewall.set_elements(None) == set()


# --- hutch.linux.nftables error text ---------------------------------------------------


@pytest.mark.parametrize(("line", "code"), [
    ("Error: Could not process rule: No such file or directory", errno.ENOENT),
    ("Error: No such file or directory; did you mean table 'x' in family ip?", errno.ENOENT),
    ("Error: Could not process rule: File exists", errno.EEXIST),
    ("Error: Could not process rule: Operation not permitted", errno.EPERM),
    ("Error: syntax error, unexpected newline, expecting string", errno.EINVAL),
    ("Error: Service out of range", errno.EINVAL),
    ("", errno.EINVAL),
])
def test_nft_error_text_maps_to_errno(line: str, code: int) -> None:
    assert nftables._errno_of(line) == code


def test_first_error_line_skips_the_echoed_command() -> None:
    text = "Error: Could not process rule: File exists\nadd chain ip t x\n^^^^^^^^\n"
    assert nftables.first_error_line(text) == "Error: Could not process rule: File exists"
    assert nftables.first_error_line("\n  warning: x\n") == "warning: x"
