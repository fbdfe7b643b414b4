"""Tools around the product: the demo, the echo server, the load generator and the network-
element simulators. The product (`protocol`, `rating`, `ocs.core`, `ocs.edge`, `ocs.node`)
never imports them; they talk to the server over its wire protocol."""
