"""Scenario files and inline faults: the model, the TOML reader, the command-line reader,
and judging an outcome against the expectations; all pure."""
