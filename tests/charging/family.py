"""The worked example of docs/accounts.md, *Shared group packages*: its catalog and numbers.

A family of three (alice, bob, carol) shares the 50 EUR monthly package "family" of the group
account "family": voice is worth 20 EUR of it, data 30 EUR. In November 2026 alice calls
1,000 s and moves 2 GiB, bob calls 500 s and moves 3 GiB, carol never calls and moves 2 GiB.
Usage is charged to the group at the catalog's prices (voice 0.06 EUR a minute, per second;
data 0.001 EUR per MiB); at the period's end (2026-12-01 00:00 Paris) the fee is debited and
apportioned.
"""

from __future__ import annotations

from typing import Final

GiB: Final = 1 << 30

CATALOG: Final = """
version = 1
name = "family-example"
timezone = "Europe/Paris"

[currency]
code = 978
alpha = "EUR"
exponent = 2

[[services]]
context_id = "32251@3gpp.org"
name = "data"
rating_groups = [10]

[[services]]
context_id = "32260@3gpp.org"
name = "voice"
rating_groups = [40]

[[rating_groups]]
id = 10
name = "data"
unit = "octets"
price = "0.001"                # 0.001 EUR per MiB
block = "1 MiB"

[rating_groups.grant]
quantum = "4 GiB"
validity_time = "1 h"

[[rating_groups]]
id = 40
name = "voice"
unit = "seconds"
price = "0.06"                 # 0.06 EUR a minute
block = "1 min"
first_increment = "1 s"
increment = "1 s"              # per second

[rating_groups.grant]
quantum = "30 min"
validity_time = "1 h"

[[packages]]
name = "family"
fee = "50.00"
period = "monthly"
member_cap = "10.00"           # usage charged per member and month

[[packages.services]]
name = "voice"
rating_groups = [40]
share = "20.00"

[[packages.services]]
name = "data"
rating_groups = [10]
share = "30.00"
"""

#: (member, MSISDN, voice seconds, data octets) in November 2026
USAGE: Final = (
    ("alice", "491700000101", 1_000, 2 * GiB),
    ("bob", "491700000102", 500, 3 * GiB),
    ("carol", "491700000103", 0, 2 * GiB),
)

#: What each member's usage was charged (micro-units): voice 0.001 EUR/s, data 0.001 EUR/MiB.
#: alice 1,000 s = 1.000 EUR, 2,048 MiB = 2.048 EUR; bob 0.500 and 3.072; carol 0 and 2.048.
USAGE_CHARGE: Final = {
    "alice": {"voice": 1_000_000, "data": 2_048_000},
    "bob": {"voice": 500_000, "data": 3_072_000},
    "carol": {"voice": 0, "data": 2_048_000},
}

#: The shares (micro-units). Voice 20 EUR by seconds 1000:500:0:
#:   alice 20,000,000 x 1000/1500 = 13,333,333.33 -> 13,333,333 (remainder 1/3)
#:   bob   20,000,000 x  500/1500 =  6,666,666.67 ->  6,666,666 (remainder 2/3) + 1 left over
#:   carol 0
#: Data 30 EUR by octets 2:3:2 (GiB):
#:   alice 30,000,000 x 2/7 = 8,571,428.57 -> 8,571,428 (4/7) + 1 (tie with carol: "alice" first)
#:   bob   30,000,000 x 3/7 = 12,857,142.86 -> 12,857,142 (6/7) + 1 (the largest remainder)
#:   carol 30,000,000 x 2/7 = 8,571,428.57 -> 8,571,428 (4/7)
#:   floors add up to 29,999,998: the 2 micro-units left go to bob (6/7), then alice (4/7,
#:   before carol by account id)
SHARES: Final = {
    "alice": {"voice": 13_333_333, "data": 8_571_429},
    "bob": {"voice": 6_666_667, "data": 12_857_143},
    "carol": {"voice": 0, "data": 8_571_428},
}
#: alice 21,904,762 + bob 19,523,810 + carol 8,571,428 = 50,000,000
TOTALS: Final = {"alice": 21_904_762, "bob": 19_523_810, "carol": 8_571_428}

#: The group account: 100 EUR, less usage 8,668,000, less the fee 50,000,000.
GROUP_START: Final = 100_000_000
GROUP_END: Final = 41_332_000
