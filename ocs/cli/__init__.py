"""The `ocs` command (`ocs.cli.main`); one module per subcommand, shared argument types in
`ocs.cli.args`. `python -m ocs` runs it too."""
