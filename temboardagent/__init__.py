"""temboard-agent: PostgreSQL remote-control agent with a maintenance plugin."""

__version__ = "8.0.0.dev0"
