"""Validation: accuracy, parity, latency, memory and gates, all through `Runner`s."""
