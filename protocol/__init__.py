"""Sans-IO Diameter protocol with MessagePack bodies (WIRE.md). No asyncio, sockets or clocks."""
