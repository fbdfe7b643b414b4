"""Network-element simulators for the charging server: a UPF (data) and an SCP (SMS and voice),
their usage logs, and `reconcile`, which checks those logs against the server's CDRs.

`urr` and `traffic` are pure (time is passed in); `link`, `runtime`, `upf` and `scp` are the
asyncio edge; `usage_log` and `reconcile` read and write files. See docs/simulators.md.
"""
