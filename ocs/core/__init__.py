"""The deterministic domain core: charging sessions, the ledger, due-time indexes, outcomes.

Synchronous, with time passed in; imports only `protocol`, `rating` and an allow-list of
standard modules (tests/test_layering.py). `charging`, `ledger` and `due` are compiled with
mypyc; their value types live in the plain modules `charging_types` and `ledger_types`.
"""
