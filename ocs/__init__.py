"""Online charging system: domain core, asyncio server, journal, CLI."""
