"""What one load run and one `ocs bench` run are: `LoadConfig`, `BenchOptions`, the mix, the
kinds of hostile neighbour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ocs.edge.tls import TlsClientConfig

#: Flow kinds. "sms" of the mix is split evenly between the session and the event form.
KINDS: Final = ("data", "voice", "sms-session", "sms-event")
SERVICES: Final = ("data", "sms", "voice")
DEFAULT_MIX: Final = (("data", 70.0), ("sms", 20.0), ("voice", 10.0))
#: What the hostile neighbour of `ocs bench --hostile` does (`ocs.tools.load.hostile`).
HOSTILE_KINDS: Final = ("never-reads", "flood", "churn", "foreign-ids")

#: Receives one progress line at a time (about one a second while a load runs).
ProgressFn = Callable[[str], None]


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """`data=70,sms=20,voice=10` -> (("data", 70.0), ("sms", 20.0), ("voice", 10.0))."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES:
            raise ValueError(f"expected SERVICE=SHARE with SERVICE in {SERVICES}, got {part!r}")
        share = float(value)
        if share < 0:
            raise ValueError(f"negative share for {name}")
        out[name] = out.get(name, 0.0) + share
    if not out or sum(out.values()) <= 0:
        raise ValueError("the mix has no positive share")
    return tuple(out.items())


def parse_hostile(text: str) -> tuple[str, ...]:
    """`flood,churn` -> ("flood", "churn"), in `HOSTILE_KINDS` order, each once; `all` is every
    kind."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    if "all" in names:
        names = (names - {"all"}) | set(HOSTILE_KINDS)
    unknown = sorted(names - set(HOSTILE_KINDS))
    if unknown or not names:
        raise ValueError(
            f"expected KIND[,KIND...] with KIND in {HOSTILE_KINDS} (or all), got {text!r}"
        )
    return tuple(k for k in HOSTILE_KINDS if k in names)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """One load run against one server (picklable: it is sent to the worker processes)."""

    host: str = "127.0.0.1"
    port: int = 3868
    mode: str = "closed"  # "closed" | "open"
    duration: float = 10.0  # measured window, seconds
    warmup: float = 1.0
    drain: float = 5.0  # how long flows in progress may take to finish after the window
    rate: float = 1000.0  # open loop: requests/s, all connections together
    connections: int = 8
    concurrency: int = 32  # closed loop: requests in flight per connection
    processes: int = 1
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    subscribers: int = 10_000
    low_balance_share: float = 0.05
    updates: int = 2  # UPDATEs per data session
    run_id: int = 0
    # Which run of this run_id on this server: the Session-Ids' middle part, and with run_id
    # and the connection the first End-to-End-Id (`traffic.first_end_to_end`). 0: the clock's
    # second when the run starts. Runs of one invocation against one server differ in it.
    epoch: int = 0
    seed: int = 1
    client_cpus: tuple[int, ...] | None = None  # pin the workers to these CPUs
    tls: TlsClientConfig | None = None  # connect over TLS (each worker builds its context)
    encoding: int = 0x4D  # body encoding (WIRE.md 1.1): 0x4D MessagePack, 0x01 binary AVPs

    @property
    def funded(self) -> int:
        """Subscribers 0 .. funded-1 have a large balance, the rest a small one."""
        low = int(self.subscribers * self.low_balance_share)
        return max(1, self.subscribers - low)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    """One `ocs bench` run: the server to load (or one started for the run), the load, and
    what else to run and write."""

    server: tuple[str, int] | None = None  # None: start our own on 127.0.0.1
    server_pid: int | None = None  # for the CPU figure of an external server
    load: LoadConfig = field(default_factory=LoadConfig)
    processes: int = 0  # 0: one per client CPU (at least 1, at most one per connection)
    vs_echo: bool = False
    provision: bool = True
    pin: bool = True
    profile_server: Path | None = None
    server_prefix: tuple[str, ...] | None = None  # see `run.charging_server_argv`
    histogram: Path | None = None
    data_base: Path | None = None  # parent of the self-started server's temporary data dir
    # A hostile neighbour (`HOSTILE_KINDS`): the load runs without it and with it, `rounds`
    # times each in alternating order, and both are reported with their ratio. (): no
    # neighbour, one run.
    hostile: tuple[str, ...] = ()
    rounds: int = 1
