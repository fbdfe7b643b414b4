"""Traffic models (pure: seeded randomness, time passed in).

A data session alternates bursts ("on", traffic at the session's rate) and pauses ("off", no
traffic; a long pause lets a Quota-Holding-Time run out). Each session draws its own rate around
the subscriber's mean (log-normal, mean preserved), and every interval gets some jitter. The
model produces float byte counts; what it hands out are ints, the fractions carried over to the
next interval so that nothing is lost or invented by rounding.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

DATA_RG = 10
VIDEO_RG = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class DataProfile:
    rate: float = 50_000.0  # mean bytes/s of a subscriber during a burst
    video_probability: float = 0.5  # share of sessions that also carry video (RG 20)
    video_share: float = 0.4  # share of a video session's bytes that are video
    uplink_share: float = 0.1  # share of the bytes that go uplink
    on_mean_s: float = 60.0  # mean burst length
    off_mean_s: float = 90.0  # mean pause length
    session_mean_s: float = 600.0  # mean session length
    gap_mean_s: float = 60.0  # mean time between two sessions of a subscriber
    jitter: float = 0.3  # +/- share of random variation per interval


@dataclass(frozen=True, slots=True)
class Bytes:
    total: int
    uplink: int


class DataFlow:
    """The traffic of one data session."""

    def __init__(self, rng: random.Random, profile: DataProfile, start_ms: int) -> None:
        self.rng = rng
        self.profile = profile
        sigma = 0.5
        self.rate = profile.rate * rng.lognormvariate(-sigma * sigma / 2, sigma)
        self.video = rng.random() < profile.video_probability
        self.on = True
        self.switch_ms = start_ms + self._duration(profile.on_mean_s)
        self._carry = {DATA_RG: 0.0, VIDEO_RG: 0.0}
        self._carry_up = {DATA_RG: 0.0, VIDEO_RG: 0.0}

    @property
    def rating_groups(self) -> tuple[int, ...]:
        return (DATA_RG, VIDEO_RG) if self.video else (DATA_RG,)

    def _duration(self, mean_s: float) -> int:
        return max(1, int(self.rng.expovariate(1 / mean_s) * 1000)) if mean_s > 0 else 1

    def active_ms(self, start_ms: int, end_ms: int) -> int:
        """Milliseconds of burst in [start_ms, end_ms), advancing the on/off switches."""
        active = 0
        t = start_ms
        while t < end_ms:
            stop = min(end_ms, self.switch_ms)
            if self.on:
                active += stop - t
            t = stop
            if t >= self.switch_ms:
                self.on = not self.on
                mean = self.profile.on_mean_s if self.on else self.profile.off_mean_s
                self.switch_ms += self._duration(mean)
        return active

    def advance(self, start_ms: int, end_ms: int) -> dict[int, Bytes]:
        """The bytes each rating group wants to send over [start_ms, end_ms)."""
        if end_ms <= start_ms:
            return {}
        active = self.active_ms(start_ms, end_ms)
        if active == 0:
            return {}
        p = self.profile
        factor = 1.0 + self.rng.uniform(-p.jitter, p.jitter)
        amount = self.rate * active / 1000 * factor
        shares = (
            {DATA_RG: 1.0 - p.video_share, VIDEO_RG: p.video_share}
            if self.video
            else {DATA_RG: 1.0}
        )
        out: dict[int, Bytes] = {}
        for rg, share in shares.items():
            want = self._carry[rg] + amount * share
            whole = math.floor(want)
            self._carry[rg] = want - whole
            up_want = self._carry_up[rg] + whole * p.uplink_share
            up = min(math.floor(up_want), whole)
            self._carry_up[rg] = up_want - up
            if whole > 0:
                out[rg] = Bytes(whole, up)
        return out


def session_length_ms(rng: random.Random, mean_s: float) -> int:
    return max(1000, int(rng.expovariate(1 / mean_s) * 1000))
