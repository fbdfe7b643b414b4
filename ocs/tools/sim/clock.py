"""The simulation clock: wall-clock time sped up by a factor.

`now_ms()` is int milliseconds since the Unix epoch of simulated time: it starts at the real
time and advances `speed` times faster. Traffic, session and call durations, Validity-Time,
Quota-Holding-Time and Tariff-Time-Change are all measured on it, so a run at `--speed 1000`
behaves like one a thousand times longer, with the same accounting.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    def __init__(
        self,
        speed: float = 1.0,
        *,
        wall: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._monotonic = monotonic
        self.start_ms = wall() // 1_000_000
        self._start_ns = monotonic()

    def now_ms(self) -> int:
        elapsed_ns = self._monotonic() - self._start_ns
        return self.start_ms + int(elapsed_ns * self.speed) // 1_000_000

    def real_seconds(self, sim_ms: int) -> float:
        """How long `sim_ms` of simulated time takes in real seconds."""
        return sim_ms / 1000 / self.speed
