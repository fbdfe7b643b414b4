"""msgspec vs msgpack-python on the CCR vectors: decode + encode, one run, one process; and the
binary AVP codec (`protocol.avp`, WIRE.md 1.1 version 0x01) on the same CCRs.

msgspec decodes straight into the validated message types. msgpack-python only produces
dicts, so its column adds what the server would then have to do by hand: check the required
keys and value types of a CCR and build the same message object (`msgspec.convert` is not used
for it, to keep msgspec out of that column: a plain dict walk does the checks).

Run: .venv/bin/python -m bench.codec [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import msgspec

from protocol.avp import decode_avps, encode_avps
from protocol.codec import decode_body, encode_body
from protocol.messages import CCR

SPEC = Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / "vectors.json"

_REQUIRED = {
    "Session-Id": str,
    "Origin-Host": str,
    "Origin-Realm": str,
    "Destination-Realm": str,
    "Auth-Application-Id": int,
    "Service-Context-Id": str,
    "CC-Request-Type": int,
    "CC-Request-Number": int,
}


def _check_units(units: Any) -> None:
    if not isinstance(units, dict):
        raise ValueError("unit map")
    for key, value in units.items():
        if key.startswith("CC-") and not (isinstance(value, int) and value >= 0):
            raise ValueError(key)


def validate_by_hand(body: Any) -> dict[str, Any]:
    """What msgpack-python leaves to the caller: the checks msgspec does while decoding."""
    if not isinstance(body, dict):
        raise ValueError("not a map")
    for key, typ in _REQUIRED.items():
        if not isinstance(body.get(key), typ):
            raise ValueError(key)
    if body["CC-Request-Type"] not in (1, 2, 3, 4):
        raise ValueError("CC-Request-Type")
    for sub in body.get("Subscription-Id", ()):
        if not isinstance(sub.get("Subscription-Id-Type"), int):
            raise ValueError("Subscription-Id-Type")
        if not isinstance(sub.get("Subscription-Id-Data"), str):
            raise ValueError("Subscription-Id-Data")
    for mscc in body.get("Multiple-Services-Credit-Control", ()):
        if not isinstance(mscc.get("Rating-Group"), int):
            raise ValueError("Rating-Group")
        if "Requested-Service-Unit" in mscc:
            _check_units(mscc["Requested-Service-Unit"])
        for usu in mscc.get("Used-Service-Unit", ()):
            _check_units(usu)
    return body


def ccr_bodies() -> list[bytes]:
    vectors = json.loads(SPEC.read_text())["vectors"]
    return [
        bytes.fromhex(v["hex"])[20:]
        for v in vectors
        if v["name"].startswith("ccr-") and "body" in v
    ]


def rate(fn: Callable[[], None], seconds: float, per_call: int) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            fn()
        n += 200
    return n * per_call / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    bodies = ccr_bodies()
    messages = [decode_body(272, True, b) for b in bodies]
    dicts = [msgpack.unpackb(b) for b in bodies]
    typed_decoder = msgspec.msgpack.Decoder(CCR)
    encoder = msgspec.msgpack.Encoder()
    packer = msgpack.Packer()

    def msgspec_decode() -> None:
        for b in bodies:
            typed_decoder.decode(b)

    def msgspec_decode_via_codec() -> None:
        for b in bodies:
            decode_body(272, True, b)

    def msgpack_decode() -> None:
        for b in bodies:
            validate_by_hand(msgpack.unpackb(b))

    def msgpack_decode_raw() -> None:
        for b in bodies:
            msgpack.unpackb(b)

    def msgspec_encode() -> None:
        for m in messages:
            encoder.encode(m)

    def msgspec_encode_codec() -> None:
        for m in messages:
            encode_body(m)

    def msgpack_encode() -> None:
        for d in dicts:
            packer.pack(d)

    binary = [encode_avps(m) for m in messages]
    assert [decode_avps(272, True, b) for b in binary] == messages

    def binary_decode() -> None:
        for b in binary:
            decode_avps(272, True, b)

    def binary_encode() -> None:
        for m in messages:
            encode_avps(m)

    k = len(bodies)
    results = {
        "decode": {
            "msgspec typed (validating)": rate(msgspec_decode, args.seconds, k),
            "msgspec via protocol.codec": rate(msgspec_decode_via_codec, args.seconds, k),
            "msgpack + hand validation": rate(msgpack_decode, args.seconds, k),
            "msgpack, no validation": rate(msgpack_decode_raw, args.seconds, k),
            "binary AVPs via protocol.avp": rate(binary_decode, args.seconds, k),
        },
        "encode": {
            "msgspec (typed message)": rate(msgspec_encode, args.seconds, k),
            "msgspec via protocol.codec": rate(msgspec_encode_codec, args.seconds, k),
            "msgpack (dict)": rate(msgpack_encode, args.seconds, k),
            "binary AVPs via protocol.avp": rate(binary_encode, args.seconds, k),
        },
    }
    print(f"codec benchmark: {k} CCR vectors, {args.seconds} s per row, bodies/s")
    for section, rows in results.items():
        print(f"  {section}:")
        for name, value in rows.items():
            print(f"    {name:<30} {value:>12,.0f}")
    d = results["decode"]
    e = results["encode"]
    ratio_d = d["msgspec typed (validating)"] / d["msgpack + hand validation"]
    ratio_e = e["msgspec (typed message)"] / e["msgpack (dict)"]
    print(f"  decode ratio msgspec/msgpack+validation: {ratio_d:.2f}x")
    print(f"  encode ratio msgspec/msgpack: {ratio_e:.2f}x")
    ratio_bd = d["msgspec via protocol.codec"] / d["binary AVPs via protocol.avp"]
    ratio_be = e["msgspec via protocol.codec"] / e["binary AVPs via protocol.avp"]
    print(f"  binary AVPs against MessagePack (protocol.codec): decode {ratio_bd:.2f}x slower,")
    print(f"    encode {ratio_be:.2f}x slower")


if __name__ == "__main__":
    main()
