"""A deterministic simulator of the charging server, in the spirit of TigerBeetle's VOPR: from a
seed it drives the real node (core, journal, recovery) with normal and hostile traffic, crashes
and restarts it, and checks the invariants after every step. See docs/vopr.md."""
