"""Tools around the product: the demo, the echo server, the load generator (`load/`), the
network-element simulators (`sim/`) and `spawn` (start a server subprocess on a free port, for
the tools and the tests). The product (`protocol`, `rating`, `ocs.core`, `ocs.edge`, `ocs.node`)
never imports them; they talk to the server over its wire protocol."""
