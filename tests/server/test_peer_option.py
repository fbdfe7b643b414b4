"""`ocs serve --peer ORIGIN_HOST[=cc,admin][@ADDRESS[,ADDRESS...]]`: the peer list as an operator
writes it (docs/operations.md, docs/protocol.md "Peers")."""

from __future__ import annotations

import argparse
import ipaddress

import pytest

from ocs.cli.serve import parse_peer, peer_list
from ocs.edge.server import PeerEntry
from protocol.codes import ApplicationId

CC = frozenset({ApplicationId.CREDIT_CONTROL})
BOTH = frozenset({ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION})


@pytest.mark.parametrize(
    ("text", "host", "entry"),
    [
        ("pgw1.op.net", "pgw1.op.net", PeerEntry(applications=CC)),
        ("pgw1.op.net=cc,admin", "pgw1.op.net", PeerEntry(applications=BOTH)),
        (
            "pgw1.op.net@10.1.2.3",
            "pgw1.op.net",
            PeerEntry(applications=CC, networks=(ipaddress.ip_network("10.1.2.3/32"),)),
        ),
        (
            "ops=admin@10.9.0.0/16, 2001:db8::/32",
            "ops",
            PeerEntry(
                applications=frozenset({ApplicationId.ADMINISTRATION}),
                networks=(
                    ipaddress.ip_network("10.9.0.0/16"),
                    ipaddress.ip_network("2001:db8::/32"),
                ),
            ),
        ),
    ],
)
def test_parse_peer(text: str, host: str, entry: PeerEntry) -> None:
    assert parse_peer(text) == (host, entry)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "=cc",
        "h=voice",
        "h@",
        "h@10.1.2.3,",
        "h@10.1.2.1/24",
        "h@somewhere.example",
        "h@10.0.0.0/33",
    ],
)
def test_parse_peer_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_peer(text)


def test_peer_list_refuses_a_name_given_twice() -> None:
    assert peer_list(None) is None and peer_list([]) is None
    one = parse_peer("a=cc")
    assert peer_list([one, parse_peer("b=admin")]) == {"a": one[1], "b": parse_peer("b=admin")[1]}
    with pytest.raises(ValueError, match="given twice"):
        peer_list([one, parse_peer("a=admin@127.0.0.1")])


def test_entry_admits_only_its_networks() -> None:
    _, entry = parse_peer("h@10.1.2.0/24,::1")
    assert entry.admits("10.1.2.200") and entry.admits("::ffff:10.1.2.7") and entry.admits("::1")
    assert not entry.admits("10.1.3.1") and not entry.admits("127.0.0.1")
    assert not entry.admits(None) and not entry.admits("not-an-address")
    assert parse_peer("h")[1].admits(None)  # unbound: any address
