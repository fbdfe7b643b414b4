"""The I/O edge: asyncio server and client, journal, store, group commit, CDR and catalog
files, logging. The only code of the product that touches sockets, files, threads or the
clock."""
