"""Black-box conformance suite: `ocs serve` as a subprocess, spoken to in raw frames
(WIRE.md). See docs/conformance.md."""
