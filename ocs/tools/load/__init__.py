"""The load generator of `ocs bench` (a tool: the product never imports it).

What a run does, in order (`run.run_bench`):

1. Provisions the subscribers' accounts over AMR before anything is measured (`traffic`).
2. Starts worker processes; each opens its share of the connections, does CER/CEA, then sends
   pre-encoded CCR frames in a closed or an open loop (`workers`).
3. Runs a warm-up, then the measured window, then lets the flows in progress finish, and merges
   what the workers measured: latency, throughput, errors, CPU (`measure`).
4. With a hostile neighbour (`--hostile`), runs the load without and with it, in alternating
   order, the neighbour in a process of its own (`hostile`).
5. Reports as text or JSON, with an optional latency histogram (`report`).

Modules: `config` (what a run is: `LoadConfig`, `BenchOptions`, the mix, the hostile kinds),
`traffic` (flows, mix weights, subscribers, frame templates, the peers' names and ids,
provisioning), `workers` (connections, closed and open loop drivers, `run_load`), `hostile`
(the misbehaving peer), `measure` (percentiles, `LoadResult`, CPU and memory accounting,
combining runs), `report` (text report, histogram PNG), `run` (`run_bench`, the servers it
starts, the order of the runs).
"""

from ocs.tools.load.config import (
    DEFAULT_MIX,
    HOSTILE_KINDS,
    KINDS,
    BenchOptions,
    LoadConfig,
    parse_hostile,
    parse_mix,
)
from ocs.tools.load.measure import LoadResult, combine_results, percentile
from ocs.tools.load.report import format_report, write_histogram_png
from ocs.tools.load.run import run_bench
from ocs.tools.load.traffic import FUNDED_BALANCE, FrameTemplate, flow_bodies, flow_weights, msisdn
from ocs.tools.load.workers import run_load

__all__ = [
    "DEFAULT_MIX",
    "FUNDED_BALANCE",
    "HOSTILE_KINDS",
    "KINDS",
    "BenchOptions",
    "FrameTemplate",
    "LoadConfig",
    "LoadResult",
    "combine_results",
    "flow_bodies",
    "flow_weights",
    "format_report",
    "msisdn",
    "parse_hostile",
    "parse_mix",
    "percentile",
    "run_bench",
    "run_load",
    "write_histogram_png",
]
