"""Toxiproxy's wire format, both sides: its JSON, its HTTP API over the engine, its config file."""
