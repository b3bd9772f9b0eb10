"""Fixtures for the reliability suite (faults, load and bad input): see RELIABILITY.md."""
