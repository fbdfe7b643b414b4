"""`bench.iot`: the IoT profile's goal (at least ten times fewer messages and CDRs per device
per day) in simulated time; counts, never timings."""

from __future__ import annotations

from bench.iot import report


def test_the_profile_cuts_messages_and_cdrs_tenfold_and_charges_the_same() -> None:
    out = report(devices=2, days=2, seed=1)
    normal, iot = out["normal"], out["iot"]
    # a meter sends 200 B every 15 min (96 a day). Normal profile: the 10 MiB grant is given
    # back after its 5 min holding time, so each report costs an UPDATE asking quota and one
    # reporting at QHT: 192 CCR/CCA = 384 messages; the hourly partial record: 24 CDRs.
    assert normal["messages_per_device_day"] == 384
    assert normal["cdrs_per_device_day"] == 24
    # profile: a grant until 19:00 UTC (the second change of price of a weekday) and one until
    # 00:00 UTC: 2 UPDATEs = 4 messages; one record a day (the period's TICK)
    assert iot["messages_per_device_day"] == 4
    assert iot["cdrs_per_device_day"] == 1
    assert out["messages_ratio"] >= 10 and out["cdrs_ratio"] >= 10
    # the same usage is charged the same
    assert iot["charged_per_device_day"] == normal["charged_per_device_day"]
